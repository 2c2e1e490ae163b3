"""The command line: a thin layer over the library.

Every command module adds its commands to :data:`main`. Errors raised by the library as
:class:`~digestbot.errors.DigestbotError` are turned into ``Error: ...`` and ``Hint: ...`` on
stderr and exit code 1, here and nowhere else.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import click

from .. import clock
from ..config import LOG_FORMAT, Config, load_config
from ..errors import DigestbotError
from ..signals import on_stop_signals

if TYPE_CHECKING:  # the store pulls in SQLAlchemy: only the commands that use it pay
    from rich.console import Console  # rich too: 40 ms, and --json or a pipe draws nothing
    from rich.progress import Progress, TaskID

    from ..store import Store

# Exit codes: documented in the README and relied on by the systemd units.
EXIT_OK = 0
EXIT_ERROR = 1  # a DigestbotError: bad input, config, lock held...
EXIT_USAGE = 2  # click's own: bad options
EXIT_PARTIAL = 3  # the job ran but some items failed (a dump, a digest)
EXIT_NOTHING = 4  # the job ran and there was nothing to do (--nothing-exit-code 0 turns it off)


def exit_status(failed: bool, done: bool, nothing: int, *, all_failed: bool = False) -> int:
    """A job's exit status: EXIT_PARTIAL when items failed (EXIT_ERROR when every one did),
    else ``nothing`` (--nothing-exit-code) when there was no work, else EXIT_OK."""
    if failed:
        return EXIT_ERROR if all_failed else EXIT_PARTIAL
    return EXIT_OK if done else nothing


F = TypeVar("F", bound=Callable[..., Any])

# At exit, before the interpreter's last garbage collections: they then skip every object the
# command made (SQLAlchemy's alone are many), 50-100 ms of each command's wall time.
atexit.register(gc.freeze)


@dataclass
class App:
    """What every command needs: the configuration, the store, consoles."""

    config_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    quiet: bool = False
    _config: Config | None = None
    _store: Store | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path, overrides=self.overrides)
        return self._config

    def store(self, *, create: bool = False, migrate: bool = True) -> Store:
        """The configured store, disposed of when the command ends. Only the commands that
        run the pipeline (``run``, ``schedule``), ``ingest`` and ``db upgrade`` pass
        ``create``; the others refuse a missing or unmigrated store, so a mistyped --db never
        gains a schema. ``migrate``: see :func:`~digestbot.store.open_store`."""
        if self._store is None:
            from ..store import open_store

            self._store = open_store(self.config["store.db"], create=create, migrate=migrate)
        return self._store

    @property
    def console(self) -> Console:
        from rich.console import Console

        return Console(quiet=self.quiet, highlight=False, soft_wrap=False)

    @property
    def err(self) -> Console:
        from rich.console import Console

        return Console(stderr=True, highlight=False)

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None


def _set_override(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if value is not None:
            app = ctx.ensure_object(App)
            app.overrides[name] = value
            app._config = None
        return value

    return callback


def _set_config(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    if value is not None:
        app = ctx.ensure_object(App)
        app.config_path = value
        app._config = None
    return value


def _set_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time such as 2026-11-22T08:00:00+01:00"
        ) from None
    # frozen, as a replay: every stage of the command sees the same moment
    clock.set_now(moment, frozen=True)
    return moment


now_option = click.option(
    "--now",
    "now",
    metavar="ISO8601",
    expose_value=False,
    is_eager=True,
    callback=_set_now,
    help="Act as if it were this moment (UTC unless an offset is given); for replays.",
)


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> Any:
    if value:
        ctx.ensure_object(App).quiet = True
    return value


def common_options(func: F) -> F:
    """--db, --config, --now and -q on every command, so they can follow the command name
    (`digestbot run -q` is `digestbot -q run`)."""
    func = now_option(func)
    func = click.option(
        "-q",
        "--quiet",
        "quiet",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_quiet,
        help="Print only errors and the summary.",
    )(func)
    func = click.option(
        "--db",
        "db",
        metavar="URL",
        expose_value=False,
        is_eager=True,
        callback=_set_override("store.db"),
        help="SQLAlchemy URL or SQLite file path of the store [env: DIGESTBOT_DB].",
    )(func)
    func = click.option(
        "--config",
        "config",
        metavar="PATH",
        expose_value=False,
        is_eager=True,
        callback=_set_config,
        type=click.Path(dir_okay=False),
        help="Configuration file [env: DIGESTBOT_CONFIG].",
    )(func)
    return func


pass_app = click.make_pass_decorator(App, ensure=True)

DATE = click.DateTime(formats=["%Y-%m-%d"])

nothing_exit_code_option = click.option(
    "--nothing-exit-code",
    type=click.IntRange(0, 255),
    default=EXIT_NOTHING,
    show_default=True,
    metavar="N",
    help="Exit status when there was nothing to do (0 to count it as success).",
)


class Bars:
    """Library progress callbacks drawn as rich bars, one per stage, on stderr.

    Call it as ``bars(stage, done, total)`` (the pipeline's form) or hand
    ``bars.stage(name)`` to a function that reports ``(done, total)``.
    """

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress  # None: nothing is drawn
        self._tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self._progress is None:
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)

    def stage(self, name: str) -> Callable[[int, int], None]:
        return lambda done, total: self(name, done, total)


@contextmanager
def progress_bars(app: App, *, enabled: bool = True) -> Iterator[Bars]:
    """Bars on a terminal; nothing with --quiet, --json (enabled=False) or when piped."""
    if app.quiet or not enabled:
        yield Bars(None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    err = Console(stderr=True)
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        yield Bars(progress)


@contextmanager
def stop_on_signals(app: App) -> Iterator[threading.Event]:
    """SIGTERM or a first Ctrl-C: stop claiming, finish what is in flight, give back the rest."""
    stop = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        app.err.print("Stopping: finishing the messages in flight...")

    with on_stop_signals(handler):
        yield stop


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


class Failure(Protocol):
    """What the CLI prints as an error: a DigestbotError, or one item's failure in a report
    (a dump, a fetch, a CSV row), whose ``str`` says where and what."""

    @property
    def hint(self) -> str | None: ...


def fail(error: Failure) -> None:
    """Print an error the one way the CLI prints errors."""
    click.echo(f"Error: {error}", err=True)
    if error.hint:
        click.echo(f"Hint: {error.hint}", err=True)


class DigestbotGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DigestbotError as error:
            fail(error)
            ctx.exit(EXIT_ERROR)
        except Exception as error:
            # a database failure no stage expected (locked, disk full, server gone): an
            # Error and a Hint, not a traceback; anything else is a bug and keeps its traceback
            if not type(error).__module__.startswith("sqlalchemy"):
                raise
            from ..store.db import store_error_from

            logging.getLogger("digestbot").debug("store error", exc_info=True)
            fail(store_error_from(error))
            ctx.exit(EXIT_ERROR)
        finally:
            app = ctx.find_object(App)
            if app is not None:
                app.close()
            clock.set_now(None)  # --now lasts for one command, also within one process


@click.group(cls=DigestbotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="digestbot")
@common_options
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.pass_context
def main(ctx: click.Context, verbose: int) -> None:
    """digestbot: get trending papers in your email inbox.

    Ingests paper listings, scores them against each subscriber's interests, and delivers
    personalised digests by email and RSS/Atom.
    """
    level = logging.WARNING if not verbose else (logging.INFO if verbose == 1 else logging.DEBUG)
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)


def _register() -> None:
    from . import db, deliver, fetch, ingest, rank, render, run, subscribers, web

    for module in (db, fetch, ingest, subscribers, rank, render, deliver, run, web):
        for command in module.COMMANDS:
            main.add_command(command)


_register()
