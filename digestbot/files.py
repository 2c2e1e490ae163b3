"""Writing files so that a reader (a web server, a mail client, the next run) never sees
half of one: write a temporary file beside the target, then rename it over the target."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path, data: bytes | str, *, mode: int = 0o644, skip_unchanged: bool = False
) -> bool:
    """Replace ``path`` with ``data`` in one step.

    With ``skip_unchanged``, a file that already holds exactly ``data`` is left alone (its
    modification time too, which feed readers' conditional requests rely on) and False is
    returned.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if skip_unchanged:
        try:
            if path.stat().st_size == len(raw) and path.read_bytes() == raw:
                return False
        except FileNotFoundError:
            pass
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
