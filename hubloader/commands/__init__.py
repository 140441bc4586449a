"""CLI command groups; see :mod:`hubloader.cli`."""
