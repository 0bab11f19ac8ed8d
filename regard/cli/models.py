"""`regard models`: the model files Regard ships and the recognition models an operator registers
(`add`, `remove`), with their sources, licences, sha256 checks and calibrations."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from regard.cli.common import EXIT_BAD_INPUT, EXIT_OK


def _rows() -> list[dict[str, Any]]:
    from regard.models.operator import operator_status
    from regard.models.registry import model_status

    return [*model_status(), *operator_status()]


def _cmd_list(args: argparse.Namespace) -> int:
    rows = _rows()
    status = EXIT_OK if all(row["verified"] for row in rows) else EXIT_BAD_INPUT
    if args.card:
        from regard.models.card import model_cards

        print(model_cards(rows, as_json=args.json))
        return status
    if args.json:
        print(json.dumps(rows, indent=2))
        return status
    for row in rows:
        print(f"{row['name']}  [{row['status']}]")
        print(f"  package: {row['package']}   licence: {row['license']}")
        print(f"  source:  {row['source'] or '(not given)'}")
        print(f"  path:    {row['path']}")
        print(f"  sha256:  {row['sha256']}")
        print(f"  input:   {row['input_size']}")
        if "calibrated" in row:
            print(f"  family:  {row['family']}   width: {row['width']}   calibrated: {'yes' if row['calibrated'] else 'no'}")
        print(f"  {row['card']}\n")
    return status


def _triple(text: str | None) -> tuple[float, float, float] | None:
    if text is None:
        return None
    parts = [float(p) for p in text.split(",")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3:
        raise argparse.ArgumentTypeError("one number, or three separated by commas")
    return (parts[0], parts[1], parts[2])


def _cmd_add(args: argparse.Namespace) -> int:
    from regard.errors import InvalidArgumentError
    from regard.models import operator

    try:
        mean, std = _triple(args.mean), _triple(args.std)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise InvalidArgumentError(f"--mean and --std are one number or three separated by commas: {exc}") from None
    model = operator.add(
        Path(args.file), name=args.name, family=args.family, license=args.licence, source=args.source or "",
        actor=args.actor or "", check_photo=Path(args.check_photo), channels=args.channels, mean=mean, std=std,
    )  # fmt: skip
    if args.json:
        print(json.dumps(model.to_dict(), indent=2))
        return EXIT_OK
    pre = model.preprocess
    print(f"registered {model.id} ({model.family}): {pre.size} x {pre.size} {pre.channels} {pre.layout}, "
          f"mean {pre.mean}, std {pre.std} -> {model.width} numbers per face")  # fmt: skip
    print(f"  file {model.path}, sha256 {model.sha256}")
    print(f"  licence: {model.license}")
    print(
        "It may enrol faces but not compare or search until it is calibrated on labelled photos of your own:\n"
        f"  regard audit PHOTOS --out DIR --model {model.name} --calibrate"
    )
    return EXIT_OK


def _cmd_remove(args: argparse.Namespace) -> int:
    from regard.models import operator

    model = operator.remove(args.name)
    print(f"unregistered {model.id}; its file {model.path} is left where it is")
    return EXIT_OK


def add_models_command(sub: Any) -> None:
    from regard.align import TEMPLATES
    from regard.models.recognizer import CHANNEL_ORDERS

    models = sub.add_parser("models", help="list the models, their sources, licences and checks; register your own")
    models.add_argument("--json", action="store_true", help="print JSON for machines")
    models.add_argument("--card", action="store_true", help="print each model's card, with its calibration")
    models.set_defaults(func=_cmd_list)
    actions = models.add_subparsers(dest="models_action")

    add = actions.add_parser(
        "add", help="register a recognition model you are licensed to use (an ONNX file; Regard never fetches one)"
    )
    add.add_argument("file", metavar="FILE.onnx")
    add.add_argument("--name", required=True, help="what collections and commands call it (A-Z a-z 0-9 . _ -)")
    add.add_argument("--family", required=True, choices=sorted(TEMPLATES), help="which alignment it was trained with")
    add.add_argument("--licence", "--license", dest="licence", required=True, help="the licence you hold for it, in words")
    add.add_argument("--source", help="where the file comes from (URL or description)")
    add.add_argument("--check-photo", required=True, metavar="PHOTO", help="a photo with a face, to run the model on before it is registered")
    add.add_argument("--channels", choices=CHANNEL_ORDERS, help="the network's channel order (default: the family's)")
    add.add_argument("--mean", help="subtracted from each pixel, one number or R,G,B (default: the family's)")
    add.add_argument("--std", help="each pixel is divided by it after the mean, one number or R,G,B (default: the family's)")
    add.add_argument("--actor", help="who registers it (default: $REGARD_ACTOR or the user)")
    add.add_argument("--json", action="store_true", help="print JSON for machines")
    add.set_defaults(func=_cmd_add)

    remove = actions.add_parser("remove", help="unregister a model (its file is left alone)")
    remove.add_argument("name")
    remove.set_defaults(func=_cmd_remove)
