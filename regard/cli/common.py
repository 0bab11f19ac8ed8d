"""What every `regard` command shares: exit codes, the store and actor options, output, errors.

Exit codes: 0 ok; 1 a negative answer (no face found, no match, no candidate, nothing enrolled);
2 bad input or a refused request (unreadable file, unknown id, missing consent), with one line on
stderr; 3 the audit log failed verification.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_NO_FACE = EXIT_NEGATIVE  # detect, compare: the negative answer is "no face" / "no match"
EXIT_BAD_INPUT = 2
EXIT_TAMPERED = 3

STORE_HELP = "store URL (default: $REGARD_STORE, the config file's store, else the user's data folder)"
MASTER_KEY_HELP = (
    "default: $REGARD_MASTER_KEY_FILE or the config file's master_key, else <store file>.master.key beside a SQLite "
    "store; for the default store and PostgreSQL, master.key in the user's data folder"
)


def error(message: str) -> None:
    """One line on stderr, as every command reports a problem."""
    print(f"regard: {message}", file=sys.stderr)


def out(args: argparse.Namespace, data: Any, text: str) -> None:
    """`data` as JSON with --json, else `text` for people."""
    print(json.dumps(data, indent=2, default=str) if getattr(args, "json", False) else text)


def default_actor() -> str:
    """$REGARD_ACTOR, else the config file's actor, else the operating-system user: who is asking,
    for the audit log."""
    from regard import config

    return config.current().default_actor


def add_store_option(parser: argparse.ArgumentParser, help_text: str = STORE_HELP) -> None:
    parser.add_argument("--store", help=help_text)


def add_actor_option(parser: argparse.ArgumentParser) -> None:
    """--actor; when it is not given, `regard`'s main sets args.actor from the settings (read then,
    after --config, not when the parser is built)."""
    parser.add_argument(
        "--actor", help="who is acting, for the audit log (default: $REGARD_ACTOR, the config file's actor, else your user name)"
    )


def master_key_file(args: argparse.Namespace, store_url: str | None) -> Any:
    """The master key file (a regard.config.MasterKeyFile) for the store at `store_url` (None: the
    settings' store): the command's --master-key, else the settings' one rule. Ask before the
    command creates the store (see Settings.master_key_for)."""
    from pathlib import Path

    from regard import config

    if getattr(args, "master_key", None):
        return config.MasterKeyFile(Path(args.master_key), "command line (--master-key)")
    return config.current().master_key_for(store_url)


def open_store(args: argparse.Namespace) -> Any:
    """The store the command's --store (or $REGARD_STORE) names, which must exist (`regard init`
    creates one); or the user's default store, created on first use."""
    from regard import config
    from regard.store import open_store as open_url

    named = args.store or config.current().store_url
    return open_url(named, create=named is None)
