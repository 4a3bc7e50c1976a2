"""Atomic writes (files and folders) and SHA-256 digests.

Nothing is ever half-written: a file is written to a temporary sibling and renamed onto its
path; a folder is staged as a sibling and swapped in. If the writer fails, the old file or
folder is left untouched and the temporary one removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drivelab.core.errors import OutputPathError

FILE_MODE = 0o644  # exported policies, checkpoints and results are readable by others


def _umask() -> int:
    # os.umask can only be read by setting it; set it back at once (single call, no import side effect).
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` (and parents), or raise ``OutputPathError`` saying why it cannot be."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise OutputPathError(f"cannot create folder {folder}: a file is in the way") from error
    except OSError as error:
        raise OutputPathError(f"cannot create folder {folder}: {error.strerror or error}") from error
    if not folder.is_dir():
        raise OutputPathError(f"cannot create folder {folder}: a file is in the way")
    return folder


def check_writable(path: str | os.PathLike, *, folder: bool = False) -> Path:
    """Check, before any expensive work, that ``path`` (a file, or a folder) can be written.

    Creates nothing: the nearest existing parent must be a writable folder and ``path`` itself,
    if it exists, must be of the right kind.

    Raises:
        OutputPathError: the path cannot be written, saying why.
    """
    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise OutputPathError(f"{path} is a file; give a folder path")
        if not folder and path.is_dir():
            raise OutputPathError(f"{path} is a folder; give a file path")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"cannot write {path}: {parent} is a file, not a folder")
    # Probe with a real file: os.access says yes to root even where nothing can be created (/proc).
    try:
        handle, probe = tempfile.mkstemp(dir=parent, prefix=".drivelab-write-probe.")
    except OSError as error:
        reason = error.strerror or error
        raise OutputPathError(f"cannot write {path}: cannot create files in {parent} ({reason})") from error
    os.close(handle)
    os.unlink(probe)
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    If the body raises, the temporary file is removed and ``path`` is left untouched. The file
    gets mode 0644 (less the umask), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    ensure_dir(path.parent)
    try:
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    except OSError as error:
        raise OutputPathError(f"cannot write {path}: {error.strerror or error}") from error
    os.close(handle)
    try:
        yield Path(tmp_name)
        if os.path.exists(tmp_name):
            os.chmod(tmp_name, FILE_MODE & ~_umask())
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload: Any, *, sort_keys: bool = False) -> Path:
    """Write ``payload`` as indented JSON (non-JSON values as ``str``) atomically."""
    return write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=sort_keys, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder next to ``path``; on success it replaces ``path``.

    An existing ``path`` is moved aside and deleted only once the new folder is in place, so a
    failure at any point leaves either the old folder or the new one, never a mix.
    """
    path = Path(path)
    ensure_dir(path.parent)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.staging."))
    os.chmod(staging, 0o755 & ~_umask())
    try:
        yield staging
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
            os.replace(path, old / "folder")
        os.replace(staging, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
