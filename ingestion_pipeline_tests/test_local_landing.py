"""The local landing folder's listing: relative posix paths at any depth, in-progress
names skipped at every level, sub-folder prefixes, and the version of each file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingestion_pipeline.landing import LocalLandingStore


def write(root: Path, rel: str, data: bytes = b"{}\n", mtime_ns: int | None = None) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    write(root, "contact_event/top.jsonl", b"1\n", mtime_ns=1_795_400_000_123_456_789)
    write(root, "contact_event/2026/11/23/a.jsonl.gz")
    write(root, "contact_event/2026/11/23/deeper/b.csv")
    write(root, "contact_event/2026/11/23/.c.jsonl.tmp")  # in progress
    write(root, "contact_event/2026/11/23/d.jsonl.part")  # in progress
    write(root, "contact_event/_markers/e.jsonl")  # a marker folder: skipped whole
    write(root, "contact_event/.hidden/f.jsonl")
    write(root, "contact/g.jsonl")
    return root


def test_list_files_gives_posix_paths_relative_to_the_root_at_any_depth(landing):
    store = LocalLandingStore(landing)
    assert sorted(f.path for f in store.list_files("contact_event")) == [
        "contact_event/2026/11/23/a.jsonl.gz",
        "contact_event/2026/11/23/deeper/b.csv",
        "contact_event/top.jsonl",
    ]
    assert [f.path for f in store.list_files("contact")] == ["contact/g.jsonl"]
    assert list(store.list_files("account")) == []  # no such folder


@pytest.mark.parametrize("folder", ["contact_event/2026/11/23", "contact_event/2026/11/23/", "contact_event//2026/11/23"])
def test_a_sub_folder_lists_the_same_paths_as_the_whole_folder_does(landing, folder):
    store = LocalLandingStore(landing)
    assert sorted(f.path for f in store.list_files(folder)) == [
        "contact_event/2026/11/23/a.jsonl.gz",
        "contact_event/2026/11/23/deeper/b.csv",
    ]


def test_a_relative_root_lists_the_same_files_and_versions_as_stat(landing, monkeypatch):
    monkeypatch.chdir(landing.parent)
    store = LocalLandingStore("landing")
    listed = {f.path: f for f in store.list_files("contact_event")}
    assert set(listed) == {"contact_event/2026/11/23/a.jsonl.gz", "contact_event/2026/11/23/deeper/b.csv", "contact_event/top.jsonl"}
    for path, f in listed.items():
        assert store.stat(path) == f  # same path, size, version and landed_at as a stat of the path
    top = listed["contact_event/top.jsonl"]
    assert (top.size, top.version) == (2, "1795400000123456789")
    assert top.landed_at.isoformat() == "2026-11-23T02:13:20.123456+00:00"
