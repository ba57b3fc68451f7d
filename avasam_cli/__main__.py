"""`python -m avasam_cli`: the `avasam` command."""

from avasam_cli.cli import main

main()
