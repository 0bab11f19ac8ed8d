"""The `regard` command line (`regard --help`): `main.py` builds the parser and maps errors to exit
codes; `common.py` holds what every command shares; one module per command group."""

from regard.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
