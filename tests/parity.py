"""Helpers shared by the parity tests against reference implementations."""

from __future__ import annotations

import torch


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """``||ours - theirs|| / ||theirs||``."""
    return float((ours - theirs).norm() / theirs.norm())


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Redraw every parameter around its current scale, so that norms, biases, layer scales and
    embeddings are far from their initial values; returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            scale = parameter.detach().std() if parameter.numel() > 1 else torch.tensor(0.1)
            noise = torch.randn(parameter.shape, generator=generator) * (scale if scale > 0 else 0.1)
            parameter.add_(noise)
    return model.eval()
