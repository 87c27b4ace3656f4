"""One way to publish state: a staging folder, then one rename (artifacts.publish)."""
from __future__ import annotations

import os
import threading

import pytest

from liftlake.lib.artifacts import publish


def _staged(parent, text: str) -> str:
    staging = publish.new_staging(str(parent))
    with open(os.path.join(staging, "weights.pt"), "w", encoding="utf-8") as fh:
        fh.write(text)
    return staging


@pytest.mark.reliability
def test_a_writer_that_listed_before_another_published_takes_the_next_version(tmp_path, monkeypatch):
    # the second job listed the folder before the first published v0001: its rename must not land
    # in (or replace) the first job's version, it takes the next number
    first, second = _staged(tmp_path, "first"), _staged(tmp_path, "second")
    assert publish.publish_next_version(str(tmp_path), first) == "v0001"
    real_listdir, calls = os.listdir, []

    def stale(path):
        calls.append(path)
        return [n for n in real_listdir(path) if n != "v0001"] if len(calls) == 1 else real_listdir(path)

    monkeypatch.setattr(publish.os, "listdir", stale)
    assert publish.publish_next_version(str(tmp_path), second) == "v0002"
    assert (tmp_path / "v0001" / "weights.pt").read_text() == "first"
    assert (tmp_path / "v0002" / "weights.pt").read_text() == "second"


@pytest.mark.reliability
def test_eight_writers_at_once_claim_eight_versions(tmp_path):
    stagings = [_staged(tmp_path, f"w{i}") for i in range(8)]
    claimed, start = [], threading.Barrier(8)

    def writer(staging):
        start.wait()
        claimed.append(publish.publish_next_version(str(tmp_path), staging))

    threads = [threading.Thread(target=writer, args=(s,)) for s in stagings]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == [f"v{i:04d}" for i in range(1, 9)]
    assert sorted((tmp_path / v / "weights.pt").read_text() for v in claimed) == sorted(f"w{i}" for i in range(8))
    assert publish.versions_in(str(tmp_path)) == sorted(claimed)
    assert not [n for n in os.listdir(tmp_path) if n.startswith("_staging")]


def test_a_key_published_twice_keeps_the_first_and_drops_the_second(tmp_path):
    first, second = _staged(tmp_path, "first"), _staged(tmp_path, "second")
    assert publish.publish_as(str(tmp_path), "abc123", first) is True
    assert publish.publish_as(str(tmp_path), "abc123", second) is False
    assert (tmp_path / "abc123" / "weights.pt").read_text() == "first"
    assert not os.path.exists(second)


def test_a_pointer_is_replaced_whole(tmp_path):
    path = str(tmp_path / "CURRENT")
    publish.write_text_atomic(path, "v0001")
    publish.write_text_atomic(path, "v0002")
    assert open(path, encoding="utf-8").read() == "v0002"
    assert os.listdir(tmp_path) == ["CURRENT"]
