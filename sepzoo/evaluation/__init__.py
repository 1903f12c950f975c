"""Scoring separations: BSSEval v4, SDR metrics, per-track scores, statistics and ``sepzoo eval``."""
