"""Training: recipes, the Lightning task, run directories, losses, loggers and ``sepzoo train``."""
