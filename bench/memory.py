"""Peak resident memory, sampled on a thread: of this process (bench/scale.py), or of a run
and the digest workers it starts, summed (bench/run.py; wait4's peak is that of the largest
single process)."""

from __future__ import annotations

import os
import threading

import psutil


class PeakRss:
    """Samples every ``every`` seconds while used as a context manager."""

    def __init__(self, pid: int | None = None, *, children: bool = False, every: float = 0.05):
        self.proc = psutil.Process(pid or os.getpid())
        self.children, self.every = children, every
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        procs = [self.proc, *self.proc.children(recursive=True)] if self.children else [self.proc]
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:  # it exited meanwhile
                pass
        return total

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.peak = max(self.peak, self._rss())
            except psutil.Error:  # the process itself exited
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def grown_mib(self) -> float:
        return (self.peak - self.base) / 2**20
