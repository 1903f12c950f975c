"""The one atomic writer: files appear whole with the umask's mode, and parts left by dead
writers are removed by the next writer, never those of a live one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sepzoo.io.atomic import atomic_folder, atomic_open, new_part, remove_stale_parts, write_text_atomic
from sepzoo.io.audio import StemWriter, write_audio
from sepzoo.models import create_model, get_model_class
from sepzoo.models.files import save_model_file


@pytest.fixture()
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _tiny_model() -> torch.nn.Module:
    return create_model("conv_tasnet", **get_model_class("conv_tasnet").test_kwargs)


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_stems_model_files_and_records_follow_the_umask(tmp_path, umask_022):
    stem = StemWriter(tmp_path / "vocals.wav", 44100, 2)
    stem.write(torch.zeros(2, 100))
    written = [
        stem.commit(),
        write_audio(tmp_path / "bass.flac", torch.zeros(2, 100), 44100),
        save_model_file(_tiny_model(), tmp_path / "m.sepzoo"),
        write_text_atomic(tmp_path / "table.txt", "x\n"),
    ]
    assert {path.name: _mode(path) for path in written} == {path.name: 0o644 for path in written}
    os.umask(0o077)
    assert _mode(write_text_atomic(tmp_path / "private.txt", "x\n")) == 0o600


def test_folders_written_whole_follow_the_umask(tmp_path, umask_022):
    with atomic_folder(tmp_path / "set") as partial:
        (partial / "inner").mkdir()
    assert _mode(tmp_path / "set") == 0o755 and _mode(tmp_path / "set" / "inner") == 0o755
    os.umask(0o077)
    with atomic_folder(tmp_path / "private"):
        pass
    assert _mode(tmp_path / "private") == 0o700


def test_a_failed_write_leaves_the_old_file_and_no_part(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as stream:
        stream.write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def _dead_pid() -> int:
    code = "import os; print(os.getpid())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(child.stdout)


def test_parts_of_a_dead_writer_are_removed_by_the_next_writer_and_a_live_ones_kept(tmp_path):
    target = tmp_path / "vocals.wav"
    live = new_part(target)  # this process: alive
    dead_pid = _dead_pid()
    dead = Path(str(live).replace(f"-{os.getpid()}.", f"-{dead_pid}."))
    dead.write_bytes(b"\0" * 1000)
    other_file = tmp_path / f".drums.wav.{live.name.split('.')[3]}.abc.part"
    other_file.write_bytes(b"")
    assert remove_stale_parts(target) == [dead]
    assert live.exists() and not dead.exists() and other_file.exists()


def test_a_separation_killed_mid_file_leaves_no_part_after_the_rerun(tmp_path):
    # A writer killed with SIGKILL while writing a stem leaves its part behind ...
    script = (
        "import os, signal, torch\n"
        "from sepzoo.io.audio import StemWriter\n"
        f"w = StemWriter({str(tmp_path / 'vocals.wav')!r}, 44100, 2)\n"
        "w.write(torch.zeros(2, 44100))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=False)
    assert len(list(tmp_path.glob(".vocals.wav.*.part"))) == 1
    # ... and the next writer of that stem removes it.
    writer = StemWriter(tmp_path / "vocals.wav", 44100, 2)
    writer.write(torch.zeros(2, 10))
    writer.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocals.wav"]
