"""Folder locks: one process at a time trains in a run directory or writes an eval folder.

The lock is an OS file lock (``flock``) on a ``.lock`` file in the folder, so it is released
when its process exits, however it exits (``kill -9`` included): a folder is never left locked
by a dead process. The holder writes its process id into the file, so a refusal can name it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sepzoo.errors import SepzooError

LOCK_FILE = ".lock"


class FolderBusyError(SepzooError):
    """Another process holds the folder's lock."""


def _holder(stream: IO[str]) -> str:
    stream.seek(0)
    pid = stream.read().strip()
    return f"process {pid}" if pid.isdigit() else "another process"


def acquire(folder: str | Path, doing: str) -> IO[str]:
    """Lock ``folder`` for this process and return the open lock file (closing it unlocks).

    Args:
        folder: An existing folder.
        doing: What the holder does there, for the refusal (e.g. ``"training in this run"``).

    Raises:
        FolderBusyError: Another live process holds the lock; the message names its process id.
    """
    path = Path(folder) / LOCK_FILE
    stream = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open as the lock
    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(stream)
        stream.close()
        raise FolderBusyError(f"{folder}: {holder} is {doing}; wait for it to finish or stop it") from None
    stream.seek(0)
    stream.truncate()
    stream.write(f"{os.getpid()}\n")
    stream.flush()
    return stream


@contextlib.contextmanager
def folder_lock(folder: str | Path, doing: str) -> Iterator[None]:
    """Hold ``folder``'s lock for the ``with`` block.

    Args:
        folder: An existing folder.
        doing: What the holder does there, for another process's refusal.
    """
    stream = acquire(folder, doing)
    try:
        yield
    finally:
        stream.close()
