"""`regard config show`: the effective settings (regard/config.py) and where each came from.

A store URL's password is shown as `***`. With --store or --master-key it shows what a command given
them would use (the master key follows the store). Exit 0; 2 for a bad configuration file or setting
(the error on stderr)."""

from __future__ import annotations

import argparse
from typing import Any

from regard.cli.common import EXIT_OK, MASTER_KEY_HELP, STORE_HELP, master_key_file
from regard.cli.common import out as _out

_DEFAULTS_IN_WORDS = {
    "store_url": "default (the user's data folder)",
    "actor": "default (the operating-system user)",
    "console_dir": "default (a private folder in the temporary directory, per store)",
}


def rows(args: argparse.Namespace) -> tuple[Any, list[tuple[str, Any, str]]]:
    """The settings' configuration file, and (name, value, source) for each setting, as the file
    names them (`service.region` is `region` in the [service] table)."""
    from regard import config

    settings = config.current()
    url = settings.default_store_url
    key = master_key_file(args, url)
    shown: dict[str, Any] = {
        "store_url": config.redact_url(url),
        "master_key_file": key.path,
        "actor": settings.default_actor,
    }
    out = [("data_dir", settings.data_dir, settings.sources.get("data_dir", config.DEFAULT_SOURCE))]
    for s in config.SETTINGS:
        source = settings.sources.get(s.name, config.DEFAULT_SOURCE)
        if s.name == "master_key_file":
            source = key.source
        elif source == config.DEFAULT_SOURCE:
            source = _DEFAULTS_IN_WORDS.get(s.name, source)
        out.append((s.key, shown.get(s.name, getattr(settings, s.name)), source))
    return settings.config_file, out


def _show(args: argparse.Namespace) -> int:
    from regard import config

    file, table = rows(args)
    data = {
        "config_file": str(file) if file is not None else None,
        "settings": {name: {"value": None if value is None else value if isinstance(value, (int, float)) else str(value), "source": source} for name, value, source in table},
    }  # fmt: skip
    looked = f"none (no --config or $REGARD_CONFIG, and no {config.default_config_file()})"
    lines = [f"config file: {file if file is not None else looked}"]
    width = max(len(name) for name, _, _ in table)
    for name, value, source in table:
        lines.append(f"{name:<{width}}  {'none' if value is None else value}  [{source}]")
    _out(args, data, "\n".join(lines))
    return EXIT_OK


def add_config_command(sub: Any) -> None:
    """Add `regard config show` to the `regard` parser."""
    cfg = sub.add_parser("config", help="show the effective settings and where each came from")
    c_sub = cfg.add_subparsers(dest="action", required=True)
    show = c_sub.add_parser("show", help="the settings (command line > environment > config file > default), passwords masked")
    show.add_argument("--json", action="store_true", help="print JSON for machines")
    show.add_argument("--store", help=STORE_HELP)
    show.add_argument("--master-key", metavar="PATH", help=f"the master key file ({MASTER_KEY_HELP})")
    show.set_defaults(func=_show)
