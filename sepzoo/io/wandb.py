"""Where W&B runs go: online when the user has configured a key, offline otherwise.

W&B never blocks, prompts or needs a network: unless an API key is configured (the
``WANDB_API_KEY`` variable or a ``wandb login`` entry in ``~/.netrc``), or a recipe asks for
``online``, runs are written offline, to be uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import netrc
import os
from typing import Any


def wandb_configured() -> bool:
    """True when a W&B API key is available without asking the user."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(auth and auth[2])


def resolve_wandb_mode(mode: str) -> str:
    """Turn a recipe's W&B mode (``auto``/``online``/``offline``/``disabled``) into a W&B mode.

    ``disabled`` is passed through whatever the environment says: the recipe asked for no W&B
    run at all. Otherwise a ``WANDB_MODE`` of ``offline``, ``disabled`` or ``dryrun`` keeps the
    run offline, and ``auto`` means online when an API key is configured.

    Args:
        mode: The recipe value.
    """
    if mode == "disabled":
        return "disabled"
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return "offline"
    if mode == "auto":
        return "online" if wandb_configured() else "offline"
    return mode


def wandb_settings() -> Any:
    """W&B settings for runs sepzoo starts: no console capture, no prompts, no system stats."""
    import wandb

    return wandb.Settings(console="off", silent=True, x_disable_stats=True)
