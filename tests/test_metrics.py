"""What operators graph: /metrics from the store, and each run's summary as a textfile for
node-exporter, both parsed back with prometheus_client's own parser."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from digestbot.cli import main
from digestbot.store import open_store

from .conftest import new_store
from .pipeline_helpers import add, fill_inbox
from .test_web_support import client_for, web_app

ENV = {"DIGESTBOT_SECRET_KEY": "test-secret-key-not-for-production"}
NOW = "2026-11-22T12:00:00+00:00"


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _lived_in(runner: CliRunner, db: str, inbox: Path, **env: str) -> None:
    fill_inbox(inbox, 2)
    store = open_store(db)
    add(store, "ada@example.org", send_hour=0)
    add(store, "bob@example.org", send_hour=0, status="unsubscribed")
    store.dispose()
    ran = runner.invoke(main, ["run", "--db", db, "--now", NOW], env={**ENV, **env})
    assert ran.exit_code == 0, ran.output


def test_a_run_writes_its_summary_as_a_textfile(runner: CliRunner, tmp_path: Path) -> None:
    db = new_store(tmp_path / "m.db")
    prom = tmp_path / "textfile" / "digestbot.prom"
    prom.parent.mkdir()
    _lived_in(runner, db, tmp_path / "inbox", DIGESTBOT_LOG_METRICS_TEXTFILE=str(prom))
    got = _samples(prom.read_text())
    moment = datetime.fromisoformat(NOW).timestamp()
    assert got[("digestbot_last_run_timestamp_seconds", ())] == pytest.approx(moment, abs=60)
    assert got[("digestbot_last_run_result", (("result", "ok"),))] == 1
    assert got[("digestbot_last_run_result", (("result", "partial"),))] == 0
    assert got[("digestbot_last_run_items", (("outcome", "sent"), ("stage", "send")))] == 1
    assert got[("digestbot_last_run_items", (("outcome", "files"), ("stage", "ingest")))] == 2
    assert got[("digestbot_last_run_items", (("outcome", "due"), ("stage", "digests")))] == 1
    assert got[("digestbot_last_run_errors", ())] == 0
    assert got[("digestbot_last_run_duration_seconds", ())] > 0
    # the next run replaces it whole: nothing to do is a result too
    again = runner.invoke(
        main,
        ["run", "--db", db, "--now", NOW],
        env={**ENV, "DIGESTBOT_LOG_METRICS_TEXTFILE": str(prom)},
    )
    assert again.exit_code == 4
    assert _samples(prom.read_text())[("digestbot_last_run_result", (("result", "nothing"),))] == 1
    assert [p.name for p in prom.parent.iterdir()] == ["digestbot.prom"]  # no temporary left


@pytest.mark.anyio
async def test_metrics_endpoint_counts_from_the_store(
    runner: CliRunner, tmp_path: Path, db_url: str
) -> None:
    app = web_app(tmp_path, db_url)
    async with client_for(app) as client:
        before = await client.get("/metrics")
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain; version=")
        empty = _samples(before.text)
        assert empty[("digestbot_subscribers", (("status", "active"),))] == 0
        assert ("digestbot_last_run_timestamp_seconds", ()) not in empty

        _lived_in(runner, db_url, tmp_path / "inbox")
        got = _samples((await client.get("/metrics")).text)
    assert got[("digestbot_subscribers", (("status", "active"),))] == 1
    assert got[("digestbot_subscribers", (("status", "unsubscribed"),))] == 1
    assert got[("digestbot_subscribers", (("status", "bounced"),))] == 0
    assert got[("digestbot_digests", (("state", "sent"),))] == 1
    assert got[("digestbot_digests", (("state", "failed"),))] == 0
    assert got[("digestbot_papers", ())] > 0
    assert got[("digestbot_last_run_result", (("result", "ok"),))] == 1
    assert got[("digestbot_last_run_timestamp_seconds", ())] == pytest.approx(
        datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp(), abs=60
    )


@pytest.mark.anyio
async def test_metrics_can_be_turned_off(tmp_path: Path, sqlite_url: str) -> None:
    app = web_app(tmp_path, sqlite_url, web__metrics=False)
    async with client_for(app) as client:
        assert (await client.get("/metrics")).status_code == 404
