"""`regard serve`: the HTTP service (regard/service/)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from regard.cli.common import EXIT_BAD_INPUT, EXIT_OK, MASTER_KEY_HELP, STORE_HELP
from regard.cli.common import error as _error


def _cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from regard.service.server import serve
    from regard.service.state import ServiceConfig

    metrics_at = None
    if args.metrics_address:
        from regard.service.metrics import parse_address

        try:
            metrics_at = parse_address(args.metrics_address)
        except ValueError as exc:
            _error(f"--metrics-address: {exc}")
            return EXIT_BAD_INPUT
    # The settings ($REGARD_...), with the options given laid over them: built once, here, and
    # handed to the workers as it is.
    given = {
        "store_url": args.store,
        "region": args.region,
        "max_image_bytes": args.max_image_bytes,
        "max_pixels": args.max_pixels,
        "request_timeout": args.request_timeout,
        "master_key_file": Path(args.master_key) if args.master_key else None,
        "reports_dir": Path(args.reports) if args.reports else None,
    }
    config = replace(ServiceConfig.from_env(), **{k: v for k, v in given.items() if v is not None})
    if (args.checkpoint_key is None) != (args.checkpoint_file is None):
        _error("--checkpoint-key and --checkpoint-file go together")
        return EXIT_BAD_INPUT
    checkpoints = None
    if args.checkpoint_key:
        from regard.service.server import Checkpointing

        checkpoints = Checkpointing(Path(args.checkpoint_key), Path(args.checkpoint_file), args.checkpoint_minutes * 60)
    serve(
        config, host=args.host, port=args.port, workers=args.workers, graceful_seconds=args.graceful_seconds,
        log_format=args.log_format, checkpoints=checkpoints, metrics_at=metrics_at, trusted_proxies=args.trusted_proxy,
    )  # fmt: skip
    return EXIT_OK


def add_serve_command(sub: Any) -> None:
    from regard.config import (
        DEFAULT_MAX_IMAGE_BYTES,
        DEFAULT_REGION,
        DEFAULT_REQUEST_TIMEOUT,
        SERVICE_MAX_PIXELS,
    )

    serve = sub.add_parser("serve", help="run the HTTP service (native API and Rekognition-compatible API)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    serve.add_argument("--store", help=STORE_HELP)
    serve.add_argument(
        "--master-key", metavar="PATH", help=MASTER_KEY_HELP
    )
    serve.add_argument("--region", help=f"the region SigV4 requests are signed for (default: $REGARD_REGION, else {DEFAULT_REGION})")
    serve.add_argument("--max-image-bytes", type=int, help=f"largest image accepted (default: $REGARD_MAX_IMAGE_BYTES, else {DEFAULT_MAX_IMAGE_BYTES})")
    serve.add_argument("--max-pixels", type=int, help=f"largest image in pixels (default: $REGARD_MAX_PIXELS, else {SERVICE_MAX_PIXELS})")
    serve.add_argument("--request-timeout", type=float, help=f"seconds before a request is abandoned (default: $REGARD_REQUEST_TIMEOUT, else {DEFAULT_REQUEST_TIMEOUT:g})")
    serve.add_argument(
        "--reports", metavar="DIR",
        help="a folder of `regard audit` reports, one folder each, that the console's accuracy page lists (default: $REGARD_REPORTS_DIR, else none)",
    )  # fmt: skip
    serve.add_argument("--graceful-seconds", type=int, default=30, help="on shutdown, time left to requests in flight (default %(default)s)")
    serve.add_argument("--log-format", choices=["text", "json"], default="text", help="text: uvicorn's lines; json: one JSON object per line, with each request's id (default %(default)s)")
    serve.add_argument(
        "--metrics-address", metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (off by default; e.g. 127.0.0.1:9464): a listener of "
        "its own, never the API's port, since the figures name collections and their sizes; keep it on a private "
        "address for Prometheus, out of reach of the reverse proxy in front of the API",
    )  # fmt: skip
    serve.add_argument(
        "--trusted-proxy", metavar="ADDRS",
        help="the reverse proxy's address(es), comma-separated (CIDR allowed): only from these are X-Forwarded-For "
        "and X-Forwarded-Proto believed, so logs show clients and the console sees HTTPS (default: believed from no one)",
    )  # fmt: skip
    serve.add_argument("--checkpoint-key", metavar="KEY", help="sign the audit log's head with this key (regard log keygen) ...")
    serve.add_argument("--checkpoint-file", metavar="FILE", help="... and append the checkpoint to FILE (regard log verify --checkpoint)")
    serve.add_argument("--checkpoint-minutes", type=float, default=60.0, help="how often (default %(default)s)")
    serve.set_defaults(func=_cmd_serve)
