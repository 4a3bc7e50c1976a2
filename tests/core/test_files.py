"""Atomic writes leave the old file or the new one, never a mix; digests match hashlib."""

import hashlib
import os
import stat

import pytest

from drivelab.core.errors import OutputPathError
from drivelab.core.files import (
    atomic_dir,
    atomic_output,
    check_writable,
    sha256_bytes,
    sha256_file,
    write_json_atomic,
    write_text_atomic,
)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_written_files_are_readable_by_others(tmp_path):
    path = write_json_atomic(tmp_path / "a" / "b.json", {"x": 1})
    assert path.read_text() == '{\n  "x": 1\n}\n'
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o644 & ~current_umask()


def current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_atomic_dir_swaps_a_whole_folder_or_keeps_the_old_one(tmp_path):
    out = tmp_path / "page"
    with atomic_dir(out) as staging:
        (staging / "index.html").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as staging:
            (staging / "index.html").write_text("v2 half")
            raise RuntimeError
    assert (out / "index.html").read_text() == "v1"
    with atomic_dir(out) as staging:
        (staging / "other.html").write_text("v2")
    assert sorted(p.name for p in out.iterdir()) == ["other.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page"]


@pytest.mark.parametrize("make_bad, folder, message", [
    (lambda t: t / "a_file" / "x.json", False, "is a file, not a folder"),
    (lambda t: t / "a_file", True, "is a file; give a folder"),
    (lambda t: t, False, "is a folder; give a file"),
    (lambda t: "/proc/drivelab/x.mp4", False, "cannot create files in /proc"),
])
def test_check_writable_refuses_what_cannot_be_written_and_creates_nothing(tmp_path, make_bad, folder, message):
    (tmp_path / "a_file").write_text("")
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(OutputPathError, match=message):
        check_writable(make_bad(tmp_path), folder=folder)
    assert sorted(tmp_path.rglob("*")) == before
    check_writable(tmp_path / "new" / "deeper" / "out.json")
    assert sorted(tmp_path.rglob("*")) == before


def test_digests_match_hashlib(tmp_path):
    data = os.urandom(3 << 20)  # spans several 1 MiB blocks
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest() == sha256_bytes(data)
