"""Experiments over trained models: comparisons, reports, zoo cards and W&B summaries."""
