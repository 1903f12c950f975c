"""Files in and out: audio, atomic writes, W&B destinations."""
