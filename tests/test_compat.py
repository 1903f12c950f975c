"""Model files and training checkpoints written by earlier sepzoo versions still load and compute
what they computed then (fixtures in tests/fixtures/, with how each was made)."""

from __future__ import annotations

from pathlib import Path

import torch

from sepzoo.models.files import load_separator

FIXTURES = Path(__file__).parent / "fixtures" / "v0.1"
OLD_RUN = FIXTURES / "runs" / "tiny-6d67a7f4"


def _outputs(spec: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    expected = torch.load(FIXTURES / "expected.pt", weights_only=True)
    model = load_separator(spec).eval()
    with torch.no_grad():
        return model(expected["mix"]), expected


def test_a_model_file_from_version_0_1_gives_the_stems_it_gave_then():
    out, expected = _outputs(FIXTURES / "model.sepzoo")
    torch.testing.assert_close(out, expected["model_file"], rtol=0, atol=0)


def test_a_training_checkpoint_from_version_0_1_gives_the_stems_it_gave_then():
    out, expected = _outputs(OLD_RUN / "checkpoints" / "step-00000002.ckpt")
    torch.testing.assert_close(out, expected["checkpoint"], rtol=0, atol=0)
