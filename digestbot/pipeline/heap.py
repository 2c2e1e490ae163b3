"""The cyclic garbage collector during the digest stage.

The stage holds a few hundred thousand objects that live as long as it does (modules, the
scoring model, SQLAlchemy's mappers) and makes millions that die with their batch. Python
runs a full collection each time the objects that outlived two young collections grow by a
quarter, and each one walks every tracked object: at 10,000 readers, 18 full collections of
110-220 ms each, 3 s of the stage's 17 s of CPU, that freed almost nothing. Frozen
(:func:`gc.freeze`), what exists when the stage starts is left out of every collection;
and a young collection every 10,000 new container objects, not 700, runs a seventh as many
collections for the same garbage. Cycles are still collected: a batch's are freed within a
few batches, so memory stays flat.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

YOUNG = 10_000  # new container objects between young collections (Python's default: 700)


def freeze_heap() -> Callable[[], None]:
    """Freeze what exists now and collect less often; the function returned undoes both
    (what was frozen is collected again)."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(YOUNG, *before[1:])

    def thaw() -> None:
        gc.set_threshold(*before)
        gc.unfreeze()

    return thaw
