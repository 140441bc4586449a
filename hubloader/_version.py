"""The package version, in a leaf so that settings and the CLI read it without the package root."""

__version__ = "0.1.0"
