"""`regard redact`: blur, pixelate or black out every face of photos and videos. Thin: it finds the
files, names the outputs and calls regard.redact."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from regard.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    STORE_HELP,
    add_actor_option,
    add_store_option,
)


def _inputs(names: list[str]) -> Iterator[tuple[Path, Path | None]]:
    """(file, folder it was found in or None): files named, and media inside folders (recursively,
    sorted), skipping earlier outputs (NAME.redacted.EXT)."""
    from regard.redact.files import PHOTO_SUFFIXES, VIDEO_SUFFIXES

    for name in names:
        path = Path(name)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                suffix = found.suffix.lower()
                if found.is_file() and (suffix in PHOTO_SUFFIXES or suffix in VIDEO_SUFFIXES):
                    if not found.stem.endswith(".redacted") and not found.name.startswith("."):
                        yield found, path
        else:
            yield path, None


def _output_for(path: Path, root: Path | None, args: argparse.Namespace, single: bool) -> Path:
    from regard.redact.files import default_output

    if args.in_place:
        return path
    if args.output is None:
        return default_output(path)
    out = Path(args.output)
    if single and not out.is_dir():
        return out
    relative = path.relative_to(root) if root is not None else Path(path.name)
    return out / relative


def _is_video(path: Path) -> bool:
    from regard.redact.files import VIDEO_SUFFIXES

    return path.suffix.lower() in VIDEO_SUFFIXES


def _redact(args: argparse.Namespace) -> int:
    from regard.errors import RegardError
    from regard.redact import redact_image, redact_video

    files = list(_inputs(args.inputs))
    single = len(files) == 1 and files[0][1] is None
    if args.preview and not single:
        print("regard: --preview takes exactly one input file", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.in_place and args.output:
        print("regard: --in-place and -o/--output exclude each other", file=sys.stderr)
        return EXIT_BAD_INPUT
    keep = None
    if args.keep_collection:
        from regard.redact import KeepConsenting
        from regard.store import open_store

        keep = KeepConsenting(open_store(args.store), args.keep_collection, actor=args.actor)
    options: dict[str, Any] = {
        "mode": args.mode,
        "scale": args.scale,
        "min_face": args.min_face,
        "min_confidence": args.threshold,
        "keep": keep,
        "keep_metadata": args.keep_metadata,
        "preview": args.preview,
        "in_place": args.in_place,
    }
    status, report = EXIT_OK, []
    bar = None
    if sys.stderr.isatty() and len(files) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="file", desc="redacting", file=sys.stderr)
    for path, root in files:
        out = _output_for(path, root, args, single)
        try:
            if _is_video(path):
                result = redact_video(
                    path, out, persistence=args.persistence, progress=sys.stderr.isatty(), **options
                )
                entry = result.to_dict()
                line = f"{path} -> {out}: {result.frames} frames, {result.tracks} faces tracked"
            else:
                photo = redact_image(str(path), out, max_pixels=args.max_pixels, **options)
                entry = photo.to_dict()
                line = f"{path} -> {out}: {photo.redacted} face{'s' if photo.redacted != 1 else ''} redacted"
            if keep is not None:
                kept = entry.get("kept", entry.get("kept_tracks", 0))
                line += f", {kept} consenting kept visible"
        except RegardError as exc:
            print(f"regard: {exc}", file=sys.stderr)
            status = EXIT_BAD_INPUT
            report.append({"input": str(path), "error": str(exc)})
        else:
            report.append(entry)
            if not args.json:
                print(line)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if args.json:
        print(json.dumps(report[0] if single and report else report, indent=2))
    return status


def add_redact_command(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add `redact` to the `regard` parser."""
    from regard.redact import (
        DEFAULT_MIN_CONFIDENCE,
        DEFAULT_MIN_FACE,
        DEFAULT_PERSISTENCE,
        DEFAULT_SCALE,
        Mode,
    )

    p = sub.add_parser(
        "redact",
        parents=[common],
        help="blur, pixelate or black out every face of photos and videos",
        description="Redact every face of photos and videos (folders recurse). Outputs are NAME.redacted.EXT "
        "unless -o says otherwise, and carry no EXIF/GPS or other identifying metadata.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photos, videos or folders")
    p.add_argument("-o", "--output", help="output file (one input) or folder (several inputs or a folder)")
    p.add_argument("--mode", default=Mode.BLUR.value, choices=[m.value for m in Mode],
                   help="blur (default), pixelate, solid (black box) or mask (write the mask itself)")
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE,
                   help="grow each face's region by (SCALE-1) x its size on every side (default %(default)s)")
    p.add_argument("--min-face", type=float, default=DEFAULT_MIN_FACE,
                   help="smallest face width to find, pixels (default %(default)s; smaller is slower)")
    p.add_argument("--threshold", type=float, default=DEFAULT_MIN_CONFIDENCE,
                   help="detector confidence 0-1 (default %(default)s; lower finds more, with more false redactions)")
    p.add_argument("--persistence", type=int, default=DEFAULT_PERSISTENCE,
                   help="video: frames a face stays covered before its first and after its last detection (default %(default)s)")
    p.add_argument("--keep-metadata", action="store_true", help="copy EXIF / container metadata (GPS included!)")
    p.add_argument("--in-place", action="store_true", help="replace the inputs with their redacted versions")
    p.add_argument("--preview", metavar="OUT.png", help="write a before/after image with the faces outlined (one input)")
    p.add_argument("--keep-collection", metavar="C",
                   help="leave visible the faces of consenting people enrolled in collection C (each use is audited)")
    add_store_option(p, "for --keep-collection: " + STORE_HELP)
    add_actor_option(p)
    p.set_defaults(func=_redact)
