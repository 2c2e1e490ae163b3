"""Count digestbot/'s lines by the issue whose work wrote them (issue 18's size goal).

Issue 18 asks for fewer lines than the 14,700 of its filing commit, not counting code that
the issues open beside it (12 to 17) add. Every line of ``digestbot/**/*.py`` at HEAD is
traced with ``git blame -w -M -C`` (moves and copies keep their first commit) to the commit
that wrote it:

- a commit in the filing commit's history: a line from the time of filing;
- a commit listed in OTHER_ISSUES: code that issue added;
- any other commit, including every commit made after this table: issue 18's, so the count
  errs against the goal, never for it.

Commits listed in ``.git-blame-ignore-revs`` (refactors that only shorten code) are passed
over, as GitHub's blame does: a line they rewrote is counted for the commit that wrote it
before, so shortening another issue's code does not make it issue 18's.

Run from a full clone (not a shallow one): python tools/lines_by_issue.py [--files]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter
from pathlib import Path

FILING = "063b400"
GOAL = 14_700
IGNORED = ".git-blame-ignore-revs"

# Commits whose surviving lines belong to another issue, by their subject lines. A commit
# that served two issues is listed only when nearly all its lines served the other one.
OTHER_ISSUES: dict[str, str] = {
    "12": "2a85a99 265dbab",
    "13": "a0662f4 75d0a1c a8ce10f 2b31e67 3553610 da87519 5d145fe f06618f 43b8d15",
    "14": "f6f6898 d3c5b35 e6e4b05 f1ae32f 2b388e7 88c1cd1 683ce29 5bd2189 c3bee05 1f3cd6c "
    "4eef6be 8e4d403 a210139 de5499b 52bb5df ab59236 ed82e0d 32f2380 bcf6b46 4f472aa "
    "253668b 748e7ed 0c3d9a9 fe75a76",
    "15": "ff641e9 60da058 db99492 2d146fe 53c1a08 7b8e046 2574f78 36306e9 6387f68 bf0db74 "
    "b0c7ee2 3d0cc64 38fe3f4 0fb6f12 007b848 f371dd4 28f92a7",
    "16": "131bd81 165a22a c8e15f7 5298c6a 90a86dc 1105bd6 08cf505 1b12881",
    "17": "1539c10 7790ade e0ea30b c82328d 3630e96 0dbb9a0 00e68b8 15fdd13 5a20244 0ed4d1e "
    "975505b d3b6c25 b4568e1 fa40119 c0e4db3 91b80ed",
}

# 25f82c6 did two issues' work in one commit: the parsers of every real page shape (issue
# 13) and in-process parsing in place of the forked one (issue 18). Split by file.
SPLIT: dict[str, tuple[str, set[str]]] = {
    "25f82c6": (
        "13",
        {
            "digestbot/ingest/page.py",
            "digestbot/ingest/hf_html.py",
            "digestbot/ingest/checks.py",
            "digestbot/ingest/hf_json.py",
            "digestbot/ingest/hf_text.py",
        },
    ),
}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout


def owner(commit: str, path: str, at_filing: set[str], labels: dict[str, str]) -> str:
    if commit in at_filing:
        return "filing"
    short = commit[:7]
    if short in SPLIT:
        issue, files = SPLIT[short]
        return issue if path in files else "18"
    return labels.get(short, "18")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", action="store_true", help="also count each file's lines")
    args = parser.parse_args()
    if git("rev-parse", "--is-shallow-repository").strip() == "true":
        sys.exit("a shallow clone has no history to blame: git fetch --unshallow first")
    at_filing = set(git("rev-list", FILING).split())
    labels = {c: issue for issue, commits in OTHER_ISSUES.items() for c in commits.split()}
    totals: Counter[str] = Counter()
    counted: Counter[str] = Counter()
    blame = ["blame", "-w", "-M", "-C", "--line-porcelain"]
    if Path(IGNORED).is_file():
        blame += ["--ignore-revs-file", IGNORED]
    for path in sorted(str(p) for p in Path("digestbot").rglob("*.py")):
        for line in git(*blame, "HEAD", "--", path).split("\n"):
            head = line.split(" ", 1)[0]
            if len(head) == 40 and all(c in "0123456789abcdef" for c in head):
                who = owner(head, path, at_filing, labels)
                totals[who] += 1
                if who in ("filing", "18"):
                    counted[path] += 1
    for who in ["filing", "18", *OTHER_ISSUES]:
        print(f"{who:>7}: {totals[who]:6,}")
    print(f"  total: {sum(totals.values()):6,}")
    mine = totals["filing"] + totals["18"]
    verdict = "met" if mine < GOAL else "not met"
    print(f"lines from the filing plus issue 18's work: {mine:,} (goal: under {GOAL:,}: {verdict})")
    if args.files:
        for path, n in counted.most_common():
            print(f"{n:6} {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
