"""Ingest benchmark: a synthetic 100,000-paper dump in the seed format.

Reports the parse rate, the end-to-end ingest rate into a fresh SQLite store (read, parse,
one transaction), the rate for a second listing of the same papers (the merge/update path),
and the peak memory. Each rate is given in wall-clock time and in this process's CPU time
(time.process_time), since a shared machine makes wall-clock figures noisy; the CPU figure
leaves out the disk's own time (fsync) and other processes. Dumps are parsed in the process
that reads them; SQLite checkpoints its WAL on its own. Target: >= 10,000 papers/s end to
end into SQLite, timed until the dump is committed. Then the parse rate of each real shape
of a papers page (the captures in ../shared/real-pages, or $DIGESTBOT_REAL_PAGES, and a
saved HTML page built from one of them).

    .venv/bin/python bench/ingest.py [--papers N] [--db URL] [--real-pages DIR]
"""

from __future__ import annotations

import argparse
import html
import json
import os
import random
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digestbot.ingest import ingest_paths, parse_file  # noqa: E402
from digestbot.store import open_store  # noqa: E402

HEADER = (
    "new\n\nGet trending papers in your email inbox!\n\nSubscribe\n\nDaily Papers\n\n"
    "byAK and the research community\n\n{listing}\n\n"
)
WORDS = (
    "transformer attention sparse diffusion retrieval agent reasoning vision language model "
    "graph neural scaling efficient benchmark alignment robust multimodal token latent policy "
    "reinforcement learning contrastive pretraining distillation quantization memory"
).split()
LIMIT = 1 << 30  # abstracts as long as real ones make 100,000 papers ~170 MB
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def synthetic_dump(path: Path, n: int, *, seed: int, listing: str) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        fh.write(HEADER.format(listing=listing))
        for i in range(n):
            title = " ".join(rng.choices(WORDS, k=8)).capitalize() + f" {i}"
            abstract = " ".join(rng.choices(WORDS, k=180)) + "."
            fh.write(f"{title}\n\n{abstract}\n\n")
            if i % 2 == 0:  # half the entries carry a metadata block, as in the seeds
                day = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}"
                year = f", {rng.randint(2019, 2024)}" if i % 4 == 0 else ""
                comments = f" {rng.randint(1, 9)}" if i % 8 == 0 else ""
                fh.write(f"  • {rng.randint(1, 12)} authors\n·\n{day}{year}{comments}\n\n")


def real_shapes(folder: Path, tmp: Path) -> None:
    """Parse rate of each real capture, read again and again for about a second each."""
    if not folder.is_dir():
        print(f"real shapes:          {folder} not found (pass --real-pages DIR)")
        return
    files = sorted(p for p in folder.glob("*") if p.suffix in (".txt", ".json"))
    files = [p for p in files if not p.name.endswith(".expected.json")]
    mirror = next((p for p in files if p.suffix == ".json"), None)
    if mirror is not None:
        # a saved HTML page holds its list as JSON in a data-props attribute
        props = html.escape(json.dumps({"dailyPapers": json.loads(mirror.read_text())["papers"]}))
        page = tmp / "saved-page.html"
        page.write_text(
            f'<!DOCTYPE html><html><body><div data-props="{props}"></div></body></html>'
        )
        files.append(page)
    for path in files:
        runs, papers, t0 = 0, 0, time.perf_counter()
        while time.perf_counter() - t0 < 1.0:
            papers += len(parse_file(path).papers)
            runs += 1
        wall = time.perf_counter() - t0
        kb = path.stat().st_size / 1024
        print(
            f"  {path.name[:58]:<58} {papers / wall:>9,.0f} papers/s "
            f"({kb:,.0f} KB, {papers // runs} papers, {wall / runs * 1000:.1f} ms a file)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=100_000)
    parser.add_argument("--db", help="store URL (default: a fresh SQLite file)")
    parser.add_argument(
        "--real-pages",
        type=Path,
        default=Path(
            os.environ.get("DIGESTBOT_REAL_PAGES")
            or Path(__file__).resolve().parents[2] / "shared" / "real-pages"
        ),
    )
    args = parser.parse_args()
    n = args.papers
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        first, second = folder / "day1.txt", folder / "day2.txt"
        synthetic_dump(first, n, seed=1, listing="Dec 29")
        # the next day's page lists the same papers again (new upvotes, longer abstracts)
        synthetic_dump(second, n, seed=1, listing="Dec 30")
        with second.open("a", encoding="utf-8") as fh:
            fh.write("\n")
        size_mb = first.stat().st_size / 1e6

        t0, c0 = time.perf_counter(), time.process_time()
        dump = parse_file(first, listing_date=date(2024, 12, 29), max_bytes=LIMIT)
        parse_s, parse_c = time.perf_counter() - t0, time.process_time() - c0
        assert len(dump.papers) == n
        del dump

        store = open_store(args.db or folder / "bench.db")
        t0, c0 = time.perf_counter(), time.process_time()
        report = ingest_paths(store, [first], listing_date=date(2024, 12, 29), max_bytes=LIMIT)
        ingest_s, ingest_c = time.perf_counter() - t0, time.process_time() - c0
        assert report.ok and report.papers_new == n, report.as_dict()

        t0, c0 = time.perf_counter(), time.process_time()
        again = ingest_paths(store, [second], listing_date=date(2024, 12, 30), max_bytes=LIMIT)
        again_s, again_c = time.perf_counter() - t0, time.process_time() - c0
        assert again.ok and again.papers_new == 0, again.as_dict()
        store.dispose()

        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"cpu_count:            {os.cpu_count()}")
        print(f"papers:               {n:,} ({size_mb:.1f} MB of text)")
        for label, wall, cpu in (
            ("parse:", parse_s, parse_c),
            ("ingest, new papers:", ingest_s, ingest_c),
            ("ingest, seen again:", again_s, again_c),
        ):
            print(
                f"{label:<22}{n / wall:,.0f} papers/s ({wall:.2f} s wall); "
                f"CPU {cpu:.2f} s, {cpu / n * 1e6:.1f} us/paper ({n / cpu:,.0f} papers/CPU-s)"
            )
        print(f"peak memory (RSS):    {peak_mb:,.0f} MB")
        target = 10_000
        if args.db and not args.db.startswith("sqlite"):
            print(
                f"target:               none for this backend ({target:,} papers/s is for SQLite)"
            )
        else:
            verdict = "meets" if n / ingest_s >= target else "MISSES"
            print(f"target:               {target:,} papers/s end to end into SQLite: {verdict}")
        print("real shapes (parse only):")
        real_shapes(args.real_pages, folder)


if __name__ == "__main__":
    main()
