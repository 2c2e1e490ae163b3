from __future__ import annotations

import os
from pathlib import Path

import pytest

from digestbot.files import write_atomic


def test_writes_and_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "feed.rss"
    assert write_atomic(target, b"one") is True
    assert write_atomic(target, "two") is True
    assert target.read_text() == "two"
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["feed.rss"]  # no temporary left


def test_unchanged_content_keeps_the_file_and_its_mtime(tmp_path: Path) -> None:
    target = tmp_path / "feed.rss"
    write_atomic(target, b"same")
    os.utime(target, (1_000_000, 1_000_000))
    assert write_atomic(target, b"same", skip_unchanged=True) is False
    assert target.stat().st_mtime == 1_000_000
    assert write_atomic(target, b"new", skip_unchanged=True) is True


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "feed.rss"
    write_atomic(target, b"old")
    with pytest.raises(TypeError):
        write_atomic(target, 12345)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["feed.rss"]
