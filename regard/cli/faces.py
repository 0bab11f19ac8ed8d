"""`regard detect` and `compare`: the face pipeline without a store."""

from __future__ import annotations

import argparse
import json
from typing import Any

from regard.cli.common import EXIT_BAD_INPUT, EXIT_NO_FACE, EXIT_OK
from regard.cli.common import error as _error


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
        result = regard.compare(
            args.a, args.b, threshold=args.threshold, fmr=args.fmr, max_pixels=args.max_pixels, model=args.model
        )
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


def add_face_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    from regard.models.detector import DEFAULT_MIN_FACE

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
    compare.add_argument("--model", help="the recognition model to compare with (a calibrated one; default: the built-in one)")
    compare.set_defaults(func=_cmd_compare)
