"""`regard keys create|list|revoke`: issue and revoke the service's API keys (regard/service/keys.py).

The secret is printed once, at creation; the store keeps only its hash. Exit codes as elsewhere: 0
ok, 2 bad input or an unknown key id (the error on stderr)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from regard.cli.common import (
    EXIT_OK,
    MASTER_KEY_HELP,
    add_actor_option,
    add_store_option,
    master_key_file,
)

ROLE_NAMES = ("detect", "enroll", "search", "admin")


def _keyring(args: argparse.Namespace) -> Any:
    from regard import config
    from regard.cli.common import open_store
    from regard.service.keys import KeyRing

    path = master_key_file(args, args.store or config.current().store_url).path  # asked before the store opens
    return KeyRing(open_store(args), path)  # a named store must exist (regard init), as for every command


def _describe(key: Any) -> str:
    collections = ", ".join(key.collections) if key.collections is not None else "all"
    status = "active" if key.active else f"revoked {key.revoked_at:%Y-%m-%d} by {key.revoked_by}"
    rate = f"{key.rate_per_minute}/min" if key.rate_per_minute is not None else "unlimited"
    return (
        f"{key.key_id}  {key.name!r}  roles: {', '.join(r.value for r in key.roles)}"
        f"  collections: {collections}  rate: {rate}  [{status}]"
    )


def _create(args: argparse.Namespace) -> int:
    ring = _keyring(args)
    key, secret = ring.create(
        name=args.name,
        roles=args.role,
        collections=args.collection,
        default_purpose=args.purpose,
        rate_per_minute=args.rate_per_minute,
        actor=args.actor,
    )
    bearer = f"{key.key_id}.{secret}"
    if args.json:
        data = key.to_dict() | {
            "secret": secret,
            "bearer_token": bearer,
            "master_key_file": str(ring.master_key_path),
        }
        print(json.dumps(data, indent=2))
        return EXIT_OK
    print(f"created {_describe(key)}")
    print(f"key id: {key.key_id}")
    print(f"secret: {secret}")
    print("The secret is not shown again: store it now (Regard keeps only its hash).")
    print()
    print("For boto3 and the AWS CLI (Rekognition-compatible API):")
    print(f"AWS_ACCESS_KEY_ID={key.key_id}")
    print(f"AWS_SECRET_ACCESS_KEY={secret}")
    print("For the native API:")
    print(f"Authorization: Bearer {bearer}")
    print()
    print(f"The key works only with the master key {ring.master_key_path}; every server sharing this store needs it.")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    keys = _keyring(args).list()
    if args.json:
        print(json.dumps([k.to_dict() for k in keys], indent=2))
    else:
        print("\n".join(_describe(k) for k in keys) or "no keys")
    return EXIT_OK


def _revoke(args: argparse.Namespace) -> int:
    key = _keyring(args).revoke(args.key_id, actor=args.actor, reason=args.reason)
    if args.json:
        print(json.dumps(key.to_dict(), indent=2))
    else:
        print(f"revoked {_describe(key)}")
    return EXIT_OK


def add_key_commands(sub: Any) -> None:
    """Add `regard keys ...` to the `regard` parser."""
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--json", action="store_true", help="print JSON for machines")
    add_store_option(opts)
    add_actor_option(opts)
    opts.add_argument(
        "--master-key",
        metavar="PATH",
        help=f"the master key file secrets derive from ({MASTER_KEY_HELP}); created by the first `keys create`. "
        "The server must use the same file.",
    )

    keys = sub.add_parser("keys", help="create, list or revoke API keys for `regard serve`")
    k_sub = keys.add_subparsers(dest="action", required=True)

    create = k_sub.add_parser("create", parents=[opts], help="issue a key; its secret is shown once")
    create.add_argument("--name", required=True, help="what or who the key is for")
    create.add_argument(
        "--role", action="append", required=True, choices=ROLE_NAMES, help="a role (repeat for more); admin implies all"
    )
    create.add_argument(
        "--collection", action="append", metavar="C", help="limit the key to this collection (repeat for more; default: all)"
    )
    create.add_argument("--purpose", help="default purpose for searches that name none (the Rekognition API)")
    create.add_argument("--rate-per-minute", type=int, metavar="N", help="requests per minute at most (default: no limit)")
    create.set_defaults(func=_create)

    k_sub.add_parser("list", parents=[opts], help="list keys, active and revoked (never their secrets)").set_defaults(
        func=_list
    )

    revoke = k_sub.add_parser("revoke", parents=[opts], help="revoke a key; it stops working at once")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.add_argument("--reason", required=True)
    revoke.set_defaults(func=_revoke)
