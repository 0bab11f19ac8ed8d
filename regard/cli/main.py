"""The `regard` command line: the parser of every command group, and errors mapped to exit codes
in one place (see regard/cli/common.py for the codes). JSON on stdout with --json, text for people
otherwise.

`regard --config PATH COMMAND` names the configuration file; it, and the command's --store,
--master-key and --actor, are laid over the process's settings while the command runs
(regard.config.command_line), so everything that asks `config.current()` sees them."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Sequence

from regard.cli.common import EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_OK
from regard.cli.common import error as _error


def build_parser() -> argparse.ArgumentParser:
    from regard import __version__
    from regard.cli.audit import add_audit_command
    from regard.cli.config import add_config_command
    from regard.cli.doctor import add_doctor_command
    from regard.cli.faces import add_face_commands
    from regard.cli.keys import add_key_commands
    from regard.cli.migrate import add_migrate_command
    from regard.cli.models import add_models_command
    from regard.cli.redact import add_redact_command
    from regard.cli.serve import add_serve_command
    from regard.cli.store import add_store_commands
    from regard.image import DEFAULT_MAX_PIXELS

    parser = argparse.ArgumentParser(prog="regard", description="Self-hosted, accountable face recognition.")
    parser.add_argument("--version", action="version", version=f"regard {__version__}")
    parser.add_argument(
        "--config", metavar="PATH",
        help="the configuration file, TOML (default: $REGARD_CONFIG, else ~/.config/regard/config.toml if it exists)",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for machines")
    common.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (default %(default)s)"
    )
    add_face_commands(sub, common)
    add_models_command(sub)
    add_serve_command(sub)
    add_store_commands(sub, common)
    add_audit_command(sub)
    add_key_commands(sub)
    add_redact_command(sub, common)
    add_migrate_command(sub)
    add_doctor_command(sub, common)
    add_config_command(sub)
    return parser


def _config_option(argv: Sequence[str]) -> str | None:
    """The value of the global --config, which comes before the command: read before the parser
    is built, as some options' defaults are settings."""
    words = iter(argv)
    for word in words:
        if word == "--config":
            return next(words, None)
        if word.startswith("--config="):
            return word[len("--config=") :]
        if not word.startswith("-"):  # the command: global options are over
            return None
    return None


def _options(args: argparse.Namespace) -> dict[str, tuple[str, Any]]:
    """The command's options that are settings too, by field of regard.config.Settings."""
    given = {"store_url": ("--store", "store"), "master_key_file": ("--master-key", "master_key"), "actor": ("--actor", "actor")}
    return {name: (option, getattr(args, dest, None)) for name, (option, dest) in given.items()}


def main(argv: Sequence[str] | None = None) -> int:
    from regard import config
    from regard.errors import ImageError, NoFaceError, RegardError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        with config.command_line(_config_option(argv)):
            args = build_parser().parse_args(argv)
            with config.command_line(args.config, _options(args)):
                settings = config.current()  # a bad config file or setting: one line and exit 2, before any work
                if getattr(args, "actor", "") is None:
                    args.actor = settings.default_actor
                return int(args.func(args))
    except NoFaceError as exc:
        _error(str(exc))
        return EXIT_NO_FACE
    except (RegardError, ImageError) as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `regard ... | head`: the reader left; say nothing more
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (Python flushes stdout at exit)
        except OSError:
            pass
        return EXIT_OK
    except OSError as exc:  # a file that cannot be read or written: one line, as for bad input
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _error(f"{where}{exc.strerror or exc}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130

