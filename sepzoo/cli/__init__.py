"""The ``sepzoo`` command line."""
