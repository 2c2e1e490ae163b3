"""How long `digestbot --help` and `--version` take to start, against what they cost when every
command imported scikit-learn and SciPy (the command line plus the scoring engine, imported
in the same run here, so the ratio does not depend on the host's speed).

Target (issue 12): `digestbot --help` in under a third of the time of the old start-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

RUNS = 7
BIN = Path(sys.executable).with_name("digestbot")
OLD_STARTUP = "import digestbot.cli, digestbot.scoring.engine"


def best_of(cmd: list[str]) -> float:
    """The fastest of RUNS wall-clock runs: start-up is what is left when nothing interferes."""
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    old = best_of([sys.executable, "-c", OLD_STARTUP])
    help_ = best_of([str(BIN), "--help"])
    version = best_of([str(BIN), "--version"])
    bare = best_of([sys.executable, "-c", "pass"])
    print(f"cores: {cores}; best of {RUNS} runs each")
    print(f"python itself:                      {bare * 1000:7.0f} ms")
    print(f"old start-up (cli + scoring engine):{old * 1000:7.0f} ms")
    print(f"digestbot --version:                {version * 1000:7.0f} ms")
    print(f"digestbot --help:                   {help_ * 1000:7.0f} ms")
    ratio = help_ / old
    verdict = "met" if ratio < 1 / 3 else "NOT met"
    print(f"--help / old start-up: {ratio:.2f} (target < 0.33: {verdict})")


if __name__ == "__main__":
    main()
