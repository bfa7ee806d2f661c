"""Files written whole or not at all (bfpack._atomic)."""

import os

import pytest

from bfpack._atomic import atomic_path


def test_the_file_appears_under_its_name_only_when_complete(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with atomic_path(str(target)) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path)
        assert os.path.basename(tmp).startswith(".out.bin.tmp-")
        with open(tmp, "wb") as f:
            f.write(b"new")
        assert target.read_bytes() == b"old"
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_an_error_removes_the_temporary_file_and_keeps_the_old_one(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(str(target)) as tmp:
        with open(tmp, "wb") as f:
            f.write(b"part")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["out.bin"] and target.read_bytes() == b"old"


def test_an_error_before_the_file_is_made_is_passed_on(tmp_path):
    with pytest.raises(OSError), atomic_path(str(tmp_path / "missing" / "x")) as tmp:
        open(tmp, "wb").close()
    assert os.listdir(tmp_path) == []


def test_writers_at_once_get_names_of_their_own(tmp_path):
    with atomic_path(str(tmp_path / "a")) as one, atomic_path(str(tmp_path / "a")) as two:
        assert one != two
        open(one, "w").close()
        open(two, "w").close()
    assert os.listdir(tmp_path) == ["a"]
