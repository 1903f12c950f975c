"""Where data sets keep files derived from their sources, and how they tell a cache entry is current.

A data set that decodes or sums its files once (MUSDB18's ``.stem.mp4`` decoded to WAV,
MoisesDB's per-instrument tracks summed per source) writes each entry to a folder that is
renamed into place with a completion marker (:data:`CACHE_MARKER`). The marker records what the
entry was made from; an entry whose marker no longer matches its sources is made again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CACHE_MARKER = ".complete.json"
"""The file that marks a cache entry as complete and records what it was made from."""


def cache_folder(root: Path, cache_dir: Path | None, hidden_name: str, kind: str) -> Path:
    """The folder a data set's derived files go to.

    Args:
        root: The data set folder.
        cache_dir: The folder a recipe chose (``data.cache_dir``), used as given; ``None`` chooses.
        hidden_name: The folder made inside ``root`` when ``root`` is writable (a name starting
            with ``.``, so that data fingerprints and track listings pass over it).
        kind: A label of the data set, naming the folder in the user's cache otherwise:
            ``<XDG_CACHE_HOME or ~/.cache>/sepzoo/<kind>-<digest of root>``.
    """
    if cache_dir is not None:
        return cache_dir
    if os.access(root, os.W_OK):
        return root / hidden_name
    user_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:12]
    return user_cache / "sepzoo" / f"{kind}-{digest}"


def is_current(entry: Path, stamp: Any) -> bool:
    """Whether a cache entry is complete and was made from what ``stamp`` describes.

    Args:
        entry: The entry's folder.
        stamp: Plain data describing the entry's sources now (paths, sizes, times, settings).
    """
    marker = entry / CACHE_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded == stamp


def write_marker(entry: Path, stamp: Any) -> None:
    """Record ``stamp`` as what a cache entry was made from; write it last, into the entry's
    temporary folder, so that only a complete entry carries it.

    Args:
        entry: The entry's (temporary) folder.
        stamp: Plain data, as :func:`is_current` will compare it.
    """
    (entry / CACHE_MARKER).write_text(json.dumps(stamp))


def file_stamp(path: Path) -> dict[str, Any]:
    """A file's absolute path, size and modification time, which change when it is replaced.

    Args:
        path: An existing file.
    """
    stat = path.stat()
    return {"source": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


__all__ = ["CACHE_MARKER", "cache_folder", "file_stamp", "is_current", "write_marker"]
