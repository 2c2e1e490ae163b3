"""Opening the store: URL handling, SQLite pragmas, migrations on first use, the run lock."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..config import DB_URL, Config
from ..errors import LockError, StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest migration's revision: what every command but `db upgrade` checks the store
# against, without importing alembic (100 ms of each command's start-up). tests/test_store.py
# checks that it is alembic's head.
SCHEMA_HEAD = "0007_no_sent_papers"
log = logging.getLogger(__name__)


def normalise_url(db: str | Path) -> str:
    """A SQLAlchemy URL, or a file path taken as a SQLite file."""
    raw = str(db).strip()
    if not raw:
        raise StoreError("no database given", hint="Pass --db PATH or set DIGESTBOT_DB.")
    if DB_URL.match(raw):
        if raw.startswith(("postgresql://", "postgres://")):
            # psycopg 3 is the driver we ship; plain postgresql:// would ask for psycopg2
            raw = "postgresql+psycopg://" + raw.split("://", 1)[1]
        return raw
    return "sqlite:///" + str(Path(raw).expanduser().resolve())


def _sqlite_pragmas(dbapi_conn: Any, _record: Any, busy_ms: int = 30000) -> None:
    cur = dbapi_conn.cursor()
    # papers rows are ~2 KB of abstract: 16 KB pages hold them with less B-tree work per row
    # (bench/ingest.py: -12% CPU). Takes effect only on a new file, so it comes before WAL.
    cur.execute("PRAGMA page_size=16384")
    # WAL lets readers (the web front) run beside a writer (the digest run)
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    # Some builds (Debian's) zero every freed page by default, so dropping a sent message's
    # 60 KB wrote 60 KB more to the WAL: most of a send's commit. FAST zeroes only what
    # is written anyway; deleted bytes are about bounded storage here, not secrecy.
    cur.execute("PRAGMA secure_delete=FAST")
    cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
    cur.close()


@dataclass
class Store:
    """An open store: an engine, a session factory, and what kind of database it is."""

    url: str
    engine: Engine
    sessions: sessionmaker[Session] = field(repr=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @property
    def sqlite_path(self) -> Path | None:
        db = self.engine.url.database
        return Path(db) if self.is_sqlite and db and db != ":memory:" else None

    def session(self) -> AbstractContextManager[Session]:
        """A transaction: committed on success, rolled back on any error."""
        return self.sessions.begin()

    @contextmanager
    def outbox_transaction(self) -> Iterator[Connection]:
        """A transaction for the outbox's claims and results, committed as SQLite commits
        them (WAL, synchronous=NORMAL): safe when the program dies at any point, while a
        crash of the database's machine may undo the last fraction of a second of it, whose
        messages are then sent again. On PostgreSQL that is ``synchronous_commit = off``
        for this transaction only: a sender commits a small group every few milliseconds
        and otherwise waited for a disk flush at each one (half of a send's time)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            yield conn

    def analyze(self, *tables: str, vacuum: bool = False) -> bool:
        """Refresh PostgreSQL's statistics of ``tables`` after a bulk write (SQLite's
        planner does without them); ``vacuum``: also make the space of the rows a bulk
        update or delete left dead reusable (sent messages' bytes, digests' old states).

        A server may run without autovacuum (this one's tests and benchmarks do), and
        then nothing else would: the store would grow by every message ever sent.

        Housekeeping after work that is done: a failure (the server gone, a lock) is logged
        as a warning and returns False, never undoes or hides that work."""
        if self.dialect != "postgresql" or not tables:
            return True
        names = ", ".join(map(self.engine.dialect.identifier_preparer.quote, tables))
        try:
            if vacuum:
                # VACUUM cannot run inside a transaction block
                with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    conn.exec_driver_sql(f"VACUUM (ANALYZE) {names}")
            else:
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"ANALYZE {names}")
        except SQLAlchemyError as exc:
            what = "VACUUM (ANALYZE)" if vacuum else "ANALYZE"
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("%s %s failed: %s; the next run tries again", what, names, first)
            return False
        return True

    def dispose(self) -> None:
        self.engine.dispose()


PG_CONNECT_TIMEOUT = 10  # seconds

# what the database said -> what to do about it
_DB_HINTS = (
    (
        "database is locked",
        "Another process holds the store's write lock (a long `subscribers import`, a "
        "second run?). Run the command again when it is done; nothing was half-written.",
    ),
    (
        "disk is full",
        "Free space on the disk that holds the store, then run the command again; the "
        "transaction in progress was rolled back.",
    ),
    (
        "disk i/o error",
        "The disk holding the store failed a read or write: check it (dmesg), then run again.",
    ),
    (
        "server closed the connection",
        "The PostgreSQL server went away. Check it is running; digests this command had "
        "claimed go back to the queue when their lease (delivery.lease_seconds) runs out.",
    ),
    (
        "connection",
        "The database cannot be reached: check store.db (--db, DIGESTBOT_DB) and that the "
        "server is running.",
    ),
)


def store_error_from(exc: BaseException, doing: str = "the store failed") -> StoreError:
    """A database error the stages did not expect, as a StoreError with the fix."""
    raw = str(getattr(exc, "orig", None) or exc).strip()
    text = raw.splitlines()[0] if raw else type(exc).__name__
    low = text.lower()
    hint = next((h for needle, h in _DB_HINTS if needle in low), None)
    return StoreError(
        f"{doing}: {text}",
        field="store.db",
        hint=hint or "Run the command again; if it keeps failing, run with -v for details.",
    )


def open_store(
    db: str | Path,
    *,
    create: bool = True,
    migrate: bool = True,
    busy_seconds: float = 30,
) -> Store:
    """Open the store at ``db`` (a URL or a SQLite file path).

    ``create``: a missing SQLite file is made and an empty or older schema migrated to the
    newest (``db upgrade``, ``run``, ``demo``, the daemon, tests). Without it the store must
    already exist and be current: a missing file, an empty database and an older schema are
    refused with a hint to run ``digestbot db upgrade``, so a mistyped path or URL never
    gains a schema, and the web front never races its workers to migrate.
    ``migrate=False`` leaves the schema as found, unchecked (``db status``; workers of a
    store their parent already opened).
    ``busy_seconds``: how long a SQLite write waits for another writer's lock before it fails
    (the web front waits less: a reader should hear "busy, try again", not wait).
    """
    url = normalise_url(db)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(
            f"not a database URL: {db!r} ({exc})",
            hint="Use a file path or e.g. postgresql+psycopg://host/db",
        ) from None
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:":
            folder = Path(path).parent
            if not create and not Path(path).is_file():
                raise StoreError(
                    f"no store at {path}",
                    field="store.db",
                    hint="Check the path given with --db or DIGESTBOT_DB; to start a new "
                    f"store there, run `digestbot db upgrade --db {path}`.",
                )
            if not folder.is_dir():
                raise StoreError(
                    f"folder {folder} does not exist",
                    field="store.db",
                    hint="Create the folder, or point --db at another path.",
                )
        kwargs["connect_args"] = {"timeout": busy_seconds}
    else:
        kwargs["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            # a host that takes the connection and never answers would otherwise hold a
            # command for minutes; ?connect_timeout=N in the URL sets another bound
            kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT}
    try:
        engine = create_engine(parsed, **kwargs)
    except Exception as exc:  # missing driver, bad options
        raise StoreError(f"cannot open {parsed.render_as_string()}: {exc}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", partial(_sqlite_pragmas, busy_ms=int(busy_seconds * 1000)))
    store = Store(url, engine, sessionmaker(engine, expire_on_commit=False))
    if migrate:
        try:
            upgrade(store) if create else require_current(store)
        except BaseException:
            store.dispose()
            raise
    return store


def require_current(store: Store) -> None:
    """Refuse a store whose schema is missing or older (or newer) than this digestbot's."""
    where = store.engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(store)
    except OperationalError as exc:
        raise StoreError(
            f"cannot open {where}: {exc.orig}",
            hint="Check that the database exists, is reachable and is readable.",
        ) from None
    if current == SCHEMA_HEAD:
        return
    if current is None:
        raise StoreError(
            f"{where} is not a digestbot store (it has no digestbot schema)",
            field="store.db",
            hint="Check --db or DIGESTBOT_DB; to make a new store there, run "
            "`digestbot db upgrade` once.",
        )
    raise StoreError(
        f"{where} has schema revision {current}; this digestbot needs {SCHEMA_HEAD}",
        field="store.db",
        hint="Run `digestbot db upgrade` once (for the web service: ExecStartPre does it), "
        "then start again.",
    )


def _alembic_config(store: Store) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = store.engine
    return cfg


def current_revision(store: Store) -> str | None:
    """The revision alembic recorded in the store (its alembic_version table); None for a
    store without one."""
    with store.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        revision = conn.scalar(text("SELECT version_num FROM alembic_version"))
        return str(revision) if revision is not None else None


def head_revision(store: Store) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(store)).get_current_head()


def upgrade(store: Store, revision: str = "head") -> None:
    """Apply pending migrations; cheap when the schema is current (alembic is not even
    imported then)."""
    try:
        if revision == "head" and current_revision(store) == SCHEMA_HEAD:
            return
        from alembic import command

        command.upgrade(_alembic_config(store), revision)
    except OperationalError as exc:
        raise StoreError(
            f"cannot migrate {store.engine.url.render_as_string()}: {exc.orig}",
            hint="Check that the database exists, is reachable and is writable.",
        ) from None


# --- the run lock ---------------------------------------------------------------------------


@dataclass
class RunLock:
    """One run at a time: a file lock beside a SQLite store, an advisory lock on PostgreSQL."""

    store: Store
    name: str = "run"
    lock_dir: Path | None = None
    _file_lock: Any = None
    _conn: Any = None
    _pg_key: int = 0

    def _key(self, schema: str = "") -> int:
        scope = f"digestbot:{self.name}" + (f":{schema}" if schema else "")
        digest = hashlib.sha256(scope.encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def acquire(self) -> RunLock:
        if self.store.dialect == "postgresql":
            conn = self.store.engine.connect()
            # advisory locks are per database: a store in another schema is another store
            schema = conn.execute(text("SELECT current_schema()")).scalar() or ""
            self._pg_key = self._key("" if schema == "public" else schema)
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._pg_key})
            if not got.scalar():
                conn.close()
                raise LockError(
                    f"another digestbot {self.name} holds the lock on this store (schema {schema})"
                )
            # the check and the lock are on this connection: a session commit elsewhere
            # must not end them
            conn.commit()
            self._conn = conn
            return self
        from filelock import FileLock, Timeout

        db = self.store.sqlite_path
        folder = self.lock_dir or (db.parent if db else Path.cwd())
        path = Path(folder) / f"{db.name if db else 'digestbot'}.{self.name}.lock"
        lock = FileLock(str(path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise LockError(f"another digestbot {self.name} is running (lock {path})") from None
        except OSError as exc:
            raise LockError(
                f"cannot create lock file {path}: {exc.strerror}",
                hint="Make the folder writable or set store.lock_dir.",
            ) from None
        self._file_lock = lock
        return self

    def release(self) -> None:
        if self._conn is not None:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._pg_key})
            self._conn.close()
            self._conn = None
        if self._file_lock is not None:
            self._file_lock.release()
            self._file_lock = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def run_lock(store: Store, config: Config, name: str = "run") -> RunLock:
    """The lock of a job (``run``, or ``ingest`` alone) on ``store``, in store.lock_dir when
    it is set, read as every path setting is (``~`` expanded)."""
    lock_dir = config.path("store.lock_dir") if config["store.lock_dir"] else None
    return RunLock(store, name, lock_dir)
