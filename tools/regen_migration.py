"""Regenerate the initial migration from digestbot/store/models.py.

Only while nothing has been released: after the first release, add new revisions with
`alembic revision --autogenerate` instead of rewriting this one.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "digestbot" / "store" / "migrations"


def main() -> None:
    target = MIGRATIONS / "versions" / "0001_initial_schema.py"
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["engine"] = create_engine(f"sqlite:///{tmp}/gen.db")
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    ruff = Path(sys.executable).with_name("ruff")
    subprocess.run([str(ruff), "format", "--quiet", str(target)], check=True)
    subprocess.run([str(ruff), "check", "--fix", "--quiet", str(target)], check=True)
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
