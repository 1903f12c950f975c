"""The one way sepzoo writes a file that someone else reads: atomically, as other programs do.

Every file (stems, model files, JSON records, reports, rendered cards) is written to a
temporary *part* in the destination's own folder, flushed to disk, given the mode the process
umask gives a new file (0644 under umask 022), and renamed over the destination, so that a
reader never sees a half-written file and an error leaves the destination as it was.

A part is named ``.<name>.<host>-<pid>.<random>.part``: the writer's host and process id let
the next writer of the same file remove parts left by a writer that died (``kill -9``, a power
cut) without ever touching the part of one still running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sepzoo.errors import SepzooError

PART_SUFFIX = ".part"

_UMASK_LOCK = threading.Lock()
_PART_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]*)-(?P<pid>\d+)\.[^.]+\.part$")


def _umask() -> int:
    with _UMASK_LOCK:  # reading the umask means setting it: keep other threads out meanwhile
        umask = os.umask(0o022)
        os.umask(umask)
    return umask


def file_mode() -> int:
    """The permission bits ``open()`` gives a new file under the current umask (0644 under 022)."""
    return 0o666 & ~_umask()


def folder_mode() -> int:
    """The permission bits ``mkdir`` gives a new folder under the current umask (0755 under 022)."""
    return 0o777 & ~_umask()


def _host() -> str:
    return socket.gethostname().replace(".", "_").replace("-", "_") or "localhost"


def _writer_alive(host: str, pid: int) -> bool:
    """Whether the process that made a part may still be writing it."""
    if host != _host():
        return True  # another machine's process: we cannot tell, so it stays
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_parts(path: str | Path) -> list[Path]:
    """Remove the parts of ``path`` whose writers are gone, and return them.

    Args:
        path: The destination file whose leftover parts to look for (beside it).
    """
    path = Path(path)
    removed: list[Path] = []
    try:
        candidates = list(path.parent.glob(f".{glob_escape(path.name)}.*{PART_SUFFIX}"))
    except OSError:
        return removed
    for part in candidates:
        match = _PART_NAME.match(part.name)
        if match is None or match["name"] != path.name:
            continue
        if _writer_alive(match["host"], int(match["pid"])):
            continue
        with contextlib.suppress(OSError):
            part.unlink()
            removed.append(part)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters escaped.

    Args:
        name: A file name.
    """
    return re.sub(r"([*?\[])", r"[\1]", name)


def new_part(path: str | Path) -> Path:
    """Create an empty part for ``path`` in its folder and return its path.

    Parts of ``path`` left by dead writers are removed first.

    Args:
        path: The destination file.
    """
    path = Path(path)
    remove_stale_parts(path)
    handle, name = tempfile.mkstemp(
        prefix=f".{path.name}.{_host()}-{os.getpid()}.", suffix=PART_SUFFIX, dir=path.parent
    )
    os.close(handle)
    return Path(name)


def commit_part(part: str | Path, path: str | Path) -> Path:
    """Flush ``part`` to disk, give it the umask's mode and rename it over ``path``.

    Args:
        part: A finished part made by :func:`new_part`.
        path: Its destination.
    """
    part, path = Path(part), Path(path)
    with open(part, "rb+") as stream:
        os.fsync(stream.fileno())
    os.chmod(part, file_mode())
    os.replace(part, path)
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (where the system allows opening folders)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Give a part's path to write ``path`` through; on success it replaces ``path``.

    For writers that take a file name (soundfile, ``torch.save``). On any error the part is
    removed and ``path`` is left as it was.

    Args:
        path: The destination file; its folder must exist.
    """
    path = Path(path)
    part = new_part(path)
    try:
        yield part
        commit_part(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a part of ``path`` for writing; on success it replaces ``path``.

    Args:
        path: The destination file; its folder must exist.
        mode: ``"w"`` for text or ``"wb"`` for bytes. (Default: ``"w"``)
        encoding: The text encoding; ignored for bytes. (Default: ``"utf-8"``)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes with mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as part:
        if mode == "wb":
            with open(part, "wb") as stream:
                yield stream
        else:
            with open(part, "w", encoding=encoding, newline="\n") as stream:
                yield stream


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically.

    Args:
        path: The destination file; its folder must exist.
        text: What to write.
    """
    with atomic_open(path) as stream:
        stream.write(text)
    return Path(path)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON with sorted keys to ``path`` atomically.

    Args:
        path: The destination file; its folder must exist.
        data: What to write.
    """
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_all_atomic(targets: dict[Path, str]) -> None:
    """Write several text files so that either all of them change or none does.

    Every part is written and flushed before the first rename, so a failure while writing
    leaves every destination as it was.

    Args:
        targets: Destination files and their texts; their folders must exist.
    """
    parts: dict[Path, Path] = {}
    try:
        for path, text in targets.items():
            part = parts[path] = new_part(path)
            with open(part, "w", encoding="utf-8", newline="\n") as stream:
                stream.write(text)
        for path, part in parts.items():
            commit_part(part, path)
    except BaseException:
        for part in parts.values():
            part.unlink(missing_ok=True)
        raise


def make_writable_folder(folder: str | Path, what: str) -> Path:
    """Create ``folder`` (and its parents) and check that files can be made in it.

    Args:
        folder: The folder.
        what: How error messages call it (``"output folder"``, ``"the runs folder"``).

    Raises:
        SepzooError: ``<folder>: cannot create <what> (<reason>)`` or
            ``<folder>: <what> is not writable``.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SepzooError(f"{folder}: cannot create {what} ({exc.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise SepzooError(f"{folder}: {what} is not writable")
    return folder


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Give a temporary folder beside ``path`` to fill; on success it replaces ``path``.

    The folder is named ``.<name>.<random>.partial``, so an interrupted writer leaves nothing
    that looks finished. On success an existing ``path`` is removed and the folder renamed into
    its place, with the mode the umask gives a new folder; on any error the folder is removed
    and ``path`` is left as it was.

    Args:
        path: The destination folder; its parent must exist.

    Raises:
        OSError: The temporary folder cannot be created.
    """
    path = Path(path)
    part = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        os.chmod(part, folder_mode())  # mkdtemp makes it private; the finished folder is not
        yield part
        if path.exists():
            shutil.rmtree(path)
        os.replace(part, path)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise


__all__ = [
    "PART_SUFFIX",
    "atomic_folder",
    "atomic_open",
    "atomic_path",
    "commit_part",
    "file_mode",
    "folder_mode",
    "make_writable_folder",
    "new_part",
    "remove_stale_parts",
    "write_all_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
