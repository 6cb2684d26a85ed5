"""app.atomic: a file or directory appears whole or not at all, durably, with the umask's mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.atomic import AtomicFile, atomic_dir, atomic_file


class Boom(Exception):
    pass


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """The inodes that were fsynced (the real ``os.fsync`` still runs)."""
    inodes: set[int] = set()
    real = os.fsync

    def spy(fd: int) -> None:
        inodes.add(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return inodes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_file_whole_or_not_at_all(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "data.bin"
    with pytest.raises(Boom), atomic_file(dest) as handle:
        handle.write(b"half")
        raise Boom
    assert not dest.exists()
    assert _leftovers(dest.parent) == []

    dest.write_bytes(b"old")
    with pytest.raises(Boom), atomic_file(dest) as handle:
        handle.write(b"new but unfinished")
        raise Boom
    assert dest.read_bytes() == b"old"
    assert _leftovers(dest.parent) == []

    with atomic_file(dest) as handle:
        handle.write(b"new")
        assert dest.read_bytes() == b"old"  # nothing visible before the block ends
    assert dest.read_bytes() == b"new"
    assert _leftovers(dest.parent) == []


def test_file_is_fsynced_with_its_directory(tmp_path: Path, fsynced: set[int]) -> None:
    dest = tmp_path / "data.bin"
    with atomic_file(dest) as handle:
        handle.write(b"x" * 1000)
    assert dest.stat().st_ino in fsynced
    assert tmp_path.stat().st_ino in fsynced


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_file_mode_follows_umask(tmp_path: Path, mask: int, expected: int) -> None:
    os.umask(mask)
    dest = tmp_path / "data.bin"
    with atomic_file(dest, suffix=".bin") as handle:
        handle.write(b"x")
    assert _mode(dest) == expected


@pytest.mark.usefixtures("umask")
def test_file_explicit_mode(tmp_path: Path) -> None:
    dest = tmp_path / "secret"
    with atomic_file(dest, mode=0o600) as handle:
        handle.write(b"x")
    assert _mode(dest) == 0o600


def test_atomic_file_abort_leaves_nothing(tmp_path: Path) -> None:
    writer = AtomicFile(tmp_path / "t.parquet", suffix=".parquet")
    assert writer.tmp.name.startswith(".tmp-") and writer.tmp.suffix == ".parquet"
    writer.handle.write(b"partial")
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_dir_publish_replaces_nothing_half_built(tmp_path: Path) -> None:
    dest = tmp_path / "report"
    with pytest.raises(Boom), atomic_dir(dest, replace=True) as tmp:
        (tmp / "a.json").write_text("{}")
        raise Boom
    assert not dest.exists()
    assert _leftovers(tmp_path) == []

    with atomic_dir(dest) as tmp:
        (tmp / "a.json").write_text("old")
    with pytest.raises(Boom), atomic_dir(dest, replace=True) as tmp:
        (tmp / "a.json").write_text("new")
        (tmp / "plots").mkdir()
        raise Boom
    assert sorted(p.name for p in dest.iterdir()) == ["a.json"]
    assert (dest / "a.json").read_text() == "old"
    assert _leftovers(tmp_path) == []

    with atomic_dir(dest, replace=True) as tmp:
        (tmp / "b.json").write_text("new")
        assert (dest / "a.json").read_text() == "old"  # the old one stays until the rename
    assert sorted(p.name for p in dest.iterdir()) == ["b.json"]
    assert _leftovers(tmp_path) == []


def test_dir_without_replace_refuses_an_existing_one(tmp_path: Path) -> None:
    dest = tmp_path / "model"
    with atomic_dir(dest) as tmp:
        (tmp / "manifest.json").write_text("1")
    with pytest.raises(OSError), atomic_dir(dest) as tmp:
        (tmp / "manifest.json").write_text("2")
    assert (dest / "manifest.json").read_text() == "1"
    assert _leftovers(tmp_path) == []


def test_dir_files_and_dirs_are_fsynced(tmp_path: Path, fsynced: set[int]) -> None:
    dest = tmp_path / "shard"
    with atomic_dir(dest) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "w.bin").write_bytes(b"w")
        (tmp / "manifest.json").write_text("{}")
    for path in (dest, dest / "sub", dest / "sub" / "w.bin", dest / "manifest.json", tmp_path):
        assert path.stat().st_ino in fsynced, path


@pytest.mark.usefixtures("umask")
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o755), (0o077, 0o700)])
def test_dir_mode_follows_umask(tmp_path: Path, mask: int, expected: int) -> None:
    os.umask(mask)
    dest = tmp_path / "model"
    with atomic_dir(dest, prefix=".tmp-best-") as tmp:
        (tmp / "f").write_text("x")
    assert _mode(dest) == expected
    assert _mode(dest / "f") == 0o666 & ~mask
