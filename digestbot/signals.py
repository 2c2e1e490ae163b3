"""Stopping on SIGTERM (systemctl stop) and SIGINT (Ctrl-C): the one place handlers are set."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Handler = Callable[[int, Any], None]  # (signum, frame), as signal.signal calls it


@contextmanager
def on_stop_signals(handler: Handler) -> Iterator[None]:
    """``handler`` runs on SIGTERM and SIGINT inside the block; the handlers found come back
    after it. Off the main thread, where Python sets no handlers, nothing is set."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
