"""Shared fixtures: a fresh store per test (SQLite file or PostgreSQL schema), a config,
a CLI runner, and a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from digestbot import clock
from digestbot.config import Config, default_config
from digestbot.store import Store, open_store

from .smtp_sink import SmtpSink

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = Path(__file__).resolve().parent / "data"
PG_URL = os.environ.get("DIGESTBOT_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regen-golden",
        action="store_true",
        help="Rewrite tests/golden/* from the current output (then review the diff).",
    )


@pytest.fixture(autouse=True)
def _system_clock() -> Iterator[None]:
    """Each test starts on the system clock, whatever an earlier one set."""
    clock.set_now(None)
    yield
    clock.set_now(None)


def _pg_available() -> str | None:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as exc:  # any driver or network error means "not here"
        return str(exc).splitlines()[0]


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    problem = _pg_available()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {problem}")
    return PG_URL


@pytest.fixture
def pg_url(pg_base_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema of its own, dropped afterwards."""
    schema = "t_" + secrets.token_hex(6)
    admin = create_engine(pg_base_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_base_url else "?"
    yield f"{pg_base_url}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on both backends."""
    if request.param == "sqlite":
        return str(tmp_path / "digestbot.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return str(tmp_path / "digestbot.db")


def new_store(db: str | Path) -> str:
    """Create a migrated store, as `digestbot db upgrade` does before other commands."""
    open_store(db, create=True).dispose()
    return str(db)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = open_store(db_url)
    yield s
    s.dispose()


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[Store]:
    s = open_store(sqlite_url)
    yield s
    s.dispose()


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Config:
    return make_config(tmp_path, db_url)


# What a test that delivers over SMTP (to a sink on 127.0.0.1) sets so the settings look like
# a real site's: over SMTP digestbot refuses loopback links, a localhost sender and a
# placeholder secret (digestbot.deliver.safety).
PUBLIC_MAIL = {
    "digest__site_url": "https://papers.example.org",
    "digest__from_address": "digest@example.org",
    "web__secret_key": "kP3v9Qm2Zr7Lx4Tn8Wc1Hs6Jd0Fb5Ny",
}
PUBLIC_MAIL_ENV = {
    "DIGESTBOT_" + key.upper().replace("__", "_"): value for key, value in PUBLIC_MAIL.items()
}


def make_config(tmp_path: Path, db: str, **overrides: object) -> Config:
    """Defaults with every folder inside tmp_path: no test touches the working folder."""
    base = {
        "store__db": db,
        "ingest__inbox": str(tmp_path / "inbox"),
        "digest__feeds_dir": str(tmp_path / "feeds"),
        "delivery__maildir": str(tmp_path / "maildir"),
        "delivery__outdir": str(tmp_path / "eml"),
        "web__secret_key": "test-secret-key-not-for-production",
    }
    base.update(overrides)
    return default_config(**base)


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner in an empty working folder with no DIGESTBOT_* from the outside."""
    for var in list(os.environ):
        if var.startswith("DIGESTBOT_") or var == "XDG_CONFIG_HOME":
            monkeypatch.delenv(var)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    return CliRunner()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (the web front's in-process client) run on asyncio."""
    return "asyncio"


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """The five seed dumps in a SQLite store, shared by a module's tests (which only read)."""
    from .test_scoring_seeds import load_seeds

    store = open_store(str(Path(tmp_path_factory.mktemp("seeds")) / "seeds.db"))
    load_seeds(store)
    yield store
    store.dispose()
