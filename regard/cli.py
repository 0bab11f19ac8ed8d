"""The `regard` command line: detect, compare, models, and the store commands (cli_store.py).

Exit codes: 0 ok; 1 no face found (detect: in some photo), no match (compare), no candidate
(search) or nothing enrolled (enroll); 2 bad input or a refused request (unknown id, missing consent),
with the error on stderr; 3 the audit log failed verification. JSON on stdout with --json, a table
for people otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

EXIT_OK, EXIT_NO_FACE, EXIT_BAD_INPUT = 0, 1, 2


def _error(message: str) -> None:
    print(f"regard: {message}", file=sys.stderr)


def _cmd_detect(args: argparse.Namespace) -> int:
    import regard
    from regard.image import load_image

    if args.draw and len(args.photos) != 1:
        _error("--draw takes exactly one photo")
        return EXIT_BAD_INPUT
    status = EXIT_OK
    report: list[dict[str, Any]] = []
    from regard.image import photo_files

    for path in photo_files(args.photos):  # folders too, as enroll and redact take them
        photo = str(path)
        try:
            rgb = load_image(photo, max_pixels=args.max_pixels)
            faces = regard.detect(rgb, embed=args.embeddings, min_face=args.min_face)
        except regard.RegardError as exc:
            _error(str(exc))
            status = max(status, EXIT_BAD_INPUT)
            report.append({"photo": photo, "error": str(exc)})
            continue
        if not faces:
            status = max(status, EXIT_NO_FACE)
        report.append(
            {
                "photo": photo,
                "width": rgb.shape[1],
                "height": rgb.shape[0],
                "faces": [f.to_dict(include_embedding=args.embeddings) for f in faces],
            }
        )
        if args.draw:
            from regard.draw import draw_faces

            draw_faces(rgb, faces).save(args.draw)
    if args.json:
        print(json.dumps(report, indent=2))  # a list, one entry per photo, however many photos
    else:
        for entry in report:
            _print_detection(entry)
    return status


def _print_detection(entry: dict[str, Any]) -> None:
    if "error" in entry:
        return
    faces = entry["faces"]
    print(f"{entry['photo']}: {len(faces)} face{'s' if len(faces) != 1 else ''} ({entry['width']}x{entry['height']})")
    if faces:
        print(f"  {'#':>2}  {'left':>6} {'top':>6} {'width':>6} {'height':>6}  {'conf':>5}  quality")
        for i, f in enumerate(faces, 1):
            b, q = f["box"], f["quality"]
            print(
                f"  {i:>2}  {b['left']:>6.0f} {b['top']:>6.0f} {b['width']:>6.0f} {b['height']:>6.0f}"
                f"  {f['confidence']:>5.2f}  {q['level']} ({q['score']:.0f})"
            )


def _cmd_compare(args: argparse.Namespace) -> int:
    import regard

    try:
        result = regard.compare(args.a, args.b, threshold=args.threshold, fmr=args.fmr, max_pixels=args.max_pixels)
    except regard.NoFaceError as exc:
        _error(str(exc))
        return EXIT_NO_FACE
    except regard.RegardError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, **result.to_dict()}, indent=2))
    else:
        verdict = "candidate match" if result.match else "no match"
        print(f"{verdict}: score {result.score:.1f} (threshold {result.threshold:.1f})")
        print(
            f"  at this threshold, {result.fmr_at_threshold:.2g} of comparisons of different people match"
            f" (FMR) and {result.fnmr_at_threshold:.2g} of the same person's do not (FNMR)"
        )
        if result.match:
            print("  a candidate is not an identification: a person must review it")
    return EXIT_OK if result.match else EXIT_NO_FACE


def _cmd_models(args: argparse.Namespace) -> int:
    from regard.errors import ModelError
    from regard.models.registry import ALL_MODELS

    rows = []
    status = EXIT_OK
    for model in ALL_MODELS:
        row: dict[str, Any] = {
            "name": model.name,
            "package": model.package,
            "sha256": model.sha256,
            "license": model.license,
            "input_size": model.input_size,
            "card": model.card,
        }
        try:
            row["path"] = str(model.verified_path())
            row["status"] = "ok (sha256 verified)"
        except ModelError as exc:
            row["path"] = None
            row["status"] = str(exc)
            status = EXIT_BAD_INPUT
        rows.append(row)
    if args.card:
        from regard.audit.card import model_cards

        print(model_cards(rows, as_json=args.json))
        return status
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            print(f"{row['name']}  [{row['status']}]")
            print(f"  package: {row['package']}   licence: {row['license']}")
            print(f"  path:    {row['path']}")
            print(f"  sha256:  {row['sha256']}")
            print(f"  input:   {row['input_size']}")
            print(f"  {row['card']}\n")
    return status


def _cmd_serve(args: argparse.Namespace) -> int:
    from regard.service.app import ServiceConfig
    from regard.service.server import serve

    config = ServiceConfig(
        store_url=args.store,
        region=args.region,
        max_image_bytes=args.max_image_bytes,
        max_pixels=args.max_pixels,
        request_timeout=args.request_timeout,
        master_key_file=Path(args.master_key) if args.master_key else None,
    )
    if (args.checkpoint_key is None) != (args.checkpoint_file is None):
        _error("--checkpoint-key and --checkpoint-file go together")
        return EXIT_BAD_INPUT
    checkpoints = None
    if args.checkpoint_key:
        from regard.service.server import Checkpointing

        checkpoints = Checkpointing(Path(args.checkpoint_key), Path(args.checkpoint_file), args.checkpoint_minutes * 60)
    serve(
        config, host=args.host, port=args.port, workers=args.workers, graceful_seconds=args.graceful_seconds,
        checkpoints=checkpoints,
    )  # fmt: skip
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from regard.image import DEFAULT_MAX_PIXELS, SERVICE_MAX_PIXELS
    from regard.models.detector import DEFAULT_MIN_FACE

    parser = argparse.ArgumentParser(prog="regard", description="Self-hosted, accountable face recognition.")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for machines")
    common.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (default %(default)s)"
    )

    detect = sub.add_parser("detect", parents=[common], help="find faces, with landmarks and quality")
    detect.add_argument("photos", nargs="+", metavar="PHOTO")
    detect.add_argument("--draw", metavar="OUT.png", help="write the photo with its faces drawn on it")
    detect.add_argument("--embeddings", action="store_true", help="include each face's 128-d embedding")
    detect.add_argument(
        "--min-face", type=int, default=DEFAULT_MIN_FACE, help="smallest face width to find, pixels (default %(default)s)"
    )
    detect.set_defaults(func=_cmd_detect)

    compare = sub.add_parser("compare", parents=[common], help="compare the main faces of two photos")
    compare.add_argument("a", metavar="A")
    compare.add_argument("b", metavar="B")
    limit = compare.add_mutually_exclusive_group()
    limit.add_argument("--threshold", type=float, help="score threshold 0-100 (default: the one for FMR 1e-3)")
    limit.add_argument("--fmr", type=float, help="target false-match rate, e.g. 1e-4")
    compare.set_defaults(func=_cmd_compare)

    models = sub.add_parser("models", help="list the model files, their sources, licences and checks")
    models.add_argument("--json", action="store_true", help="print JSON for machines")
    models.add_argument("--card", action="store_true", help="print each model's card, with the calibration it ships with")
    models.set_defaults(func=_cmd_models)

    serve = sub.add_parser("serve", help="run the HTTP service (native API and Rekognition-compatible API)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default %(default)s)")
    serve.add_argument("--store", help="store URL (default: $REGARD_STORE or the user's SQLite file)")
    serve.add_argument(
        "--master-key", metavar="PATH", help="the master key file keys are derived from (default: $REGARD_MASTER_KEY_FILE or next to the default store)"
    )
    serve.add_argument("--region", default="us-east-1", help="the region SigV4 requests are signed for (default %(default)s)")
    serve.add_argument("--max-image-bytes", type=int, default=5 * 1024 * 1024, help="largest image accepted (default %(default)s)")
    serve.add_argument("--max-pixels", type=int, default=SERVICE_MAX_PIXELS, help="largest image in pixels (default %(default)s)")
    serve.add_argument("--request-timeout", type=float, default=60.0, help="seconds before a request is abandoned (default %(default)s)")
    serve.add_argument("--graceful-seconds", type=int, default=30, help="on shutdown, time left to requests in flight (default %(default)s)")
    serve.add_argument("--checkpoint-key", metavar="KEY", help="sign the audit log's head with this key (regard log keygen) ...")
    serve.add_argument("--checkpoint-file", metavar="FILE", help="... and append the checkpoint to FILE (regard log verify --checkpoint)")
    serve.add_argument("--checkpoint-minutes", type=float, default=60.0, help="how often (default %(default)s)")
    serve.set_defaults(func=_cmd_serve)

    from regard.cli_store import add_store_commands

    add_store_commands(sub, common)
    from regard.cli_audit import add_audit_command

    add_audit_command(sub)
    from regard.cli_keys import add_key_commands

    add_key_commands(sub)
    from regard.cli_redact import add_redact_command

    add_redact_command(sub, common)
    from regard.cli_migrate import add_migrate_command

    add_migrate_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from regard.errors import ImageError, NoFaceError, RegardError

    try:
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


if __name__ == "__main__":
    sys.exit(main())
