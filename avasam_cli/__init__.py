"""avasam-cli: the command-line companion for Avasam sellers."""

__version__ = "0.1.0"
