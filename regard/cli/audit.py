"""`regard audit`: accuracy and per-group differential reports on the user's own labelled photos,
and the threshold table (calibration) that compare and search use. Thin: it parses, calls
regard.accuracy (dataset, report, findings) and the store, and prints.

    regard audit photos/ --out audit/ [--groups groups.csv] [--calibrate [TABLE.json]]
    regard audit lfw/pairs.txt --images lfw/ --out audit/
    regard audit photos/ --out audit/ --apply-to volunteers --target-fmr 1e-5 --reason "..."
    regard audit photos/ --out audit/ --model arcface-r100 [--calibrate]

`--model NAME` audits an operator's registered model (`regard models`) instead of the built-in one:
every photo is embedded by it and scored on its scale; with `--calibrate` the table measured is
also stored with the model in the registry, after which it may compare and search.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from regard.cli.common import EXIT_OK, STORE_HELP, add_store_option, default_actor


def run(args: argparse.Namespace) -> int:
    from regard.accuracy import dataset as ds
    from regard.accuracy import report as rp
    from regard.accuracy.findings import findings, model_card_section
    from regard.errors import RegardError
    from regard.match import DEFAULT_FMR
    from regard.models import operator

    if (args.apply_to is None) != (args.target_fmr is None):
        raise RegardError("--apply-to and --target-fmr go together")
    if args.target_fmr is not None and not 0 < args.target_fmr < 1:
        raise RegardError(f"--target-fmr is a rate between 0 and 1, not {args.target_fmr}")
    # Before any work: the model (unknown, or its file changed: exit 2), and the collection to apply to.
    model = operator.resolve(args.model)
    store = None
    if args.apply_to is not None:
        if not model.calibrated and args.calibrate is None:
            raise RegardError(
                f"model {model.name!r} is not calibrated, so no collection threshold can be set from an audit of it: "
                "add --calibrate to store this audit's threshold table with the model as well"
            )
        from regard.store import open_store

        store = open_store(args.store)
        collection = store.get_collection(args.apply_to)
        if collection.model != model.id:
            raise RegardError(
                f"collection {args.apply_to!r} holds vectors of model {collection.model}, not of {model.id}: "
                f"its threshold comes from an audit of its own model (--model {collection.model.split(':')[0]})"
            )
    started = time.perf_counter()
    groups = ds.read_groups(Path(args.groups)) if args.groups else None
    data = ds.load(
        Path(args.data),
        images=Path(args.images) if args.images else None,
        name=args.name,
        genuine_pairs=args.genuine_pairs,
        impostor_pairs=args.impostor_pairs,
        seed=args.seed,
    )
    storing = args.calibrate is not None and not model.built_in
    if storing:
        _check_calibration_size(model.name, int((~data.pairs.same).sum()), data.name, DEFAULT_FMR)
    _say(
        args,
        f"{data.name}: {len(data.photos):,} photos of {data.person_count:,} people, "
        f"{int(data.pairs.same.sum()):,} same-person and {int((~data.pairs.same).sum()):,} different-person pairs"
        + ("" if model.built_in else f"; model {model.id} ({model.family} family, {model.width}-d vectors)"),
    )
    t0 = time.perf_counter()
    embedded = ds.embed_photos(data, model=model)
    embedding_seconds = round(time.perf_counter() - t0, 2)
    audit = rp.build(
        data,
        embedded,
        threshold=args.threshold,
        groups=groups,
        groups_source=str(args.groups) if args.groups else None,
        embedding_seconds=embedding_seconds,
        model=model,
    )
    out = Path(args.out)
    stored = None
    if args.calibrate is not None:
        if storing:  # photos without a face may have left too few pairs
            _check_calibration_size(model.name, audit.table.impostor_pairs, f"{data.name} (with a face in both photos)", DEFAULT_FMR)
        table_path = Path(args.calibrate) if args.calibrate else out / "calibration.json"
        table_path.parent.mkdir(parents=True, exist_ok=True)
        table_path.write_text(audit.table.to_json() + "\n")
        audit.report["calibration"]["path"] = str(table_path)
        if storing:
            stored = operator.set_calibration(model.id, audit.table)
            audit.report["calibration"]["stored_with"] = stored.id
            audit.report["findings"] = findings(audit.report)
    if args.apply_to is not None:
        assert store is not None
        audit.report["applied"] = _apply(args, audit, store, model)
    paths = rp.write(audit, out)
    if args.append_card:
        with open(args.append_card, "a", encoding="utf-8") as f:
            f.write("\n" + model_card_section(audit.report))
    total = time.perf_counter() - started
    if args.json:
        summary: dict[str, Any] = {"report": str(paths["html"]), "json": str(paths["json"]), "seconds": round(total, 1), "findings": audit.report["findings"]}
        if not model.built_in:
            summary["model"] = {"id": model.id, "calibrated": stored is not None or model.calibrated, "calibration_stored": stored is not None}
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    for line in audit.report["findings"]:
        print(f"- {line}")
    for line in audit.report["warnings"]:
        print(f"warning: {line}", file=sys.stderr)
    v = audit.report["verification"]
    if not v["tar_at_fmr"]:
        print(f"\nno FMR target is measurable from {v['impostor_pairs']:,} different-person pairs (1e-2 needs 100)")
    else:
        print(f"\n{'target FMR':>10} {'threshold':>9} {'TAR':>8} {'false matches':>15}")
    for r in v["tar_at_fmr"]:
        few = "  (few: rough)" if r["few_errors"] else ""
        print(f"{r['target_fmr']:>10.0e} {r['threshold']:>9.1f} {100 * r['tar']:>7.2f}% {r['false_matches']:>6} / {r['impostor_pairs']:<8}{few}")
    if audit.report["calibration"]["path"]:
        print(f"\nthreshold table written to {audit.report['calibration']['path']}")
    if stored is not None:
        for line in _calibrated_lines(stored):
            print(line)
    if audit.report["applied"]:
        a = audit.report["applied"]
        print(f"collection {a['collection']!r}: search threshold set to {a['threshold']:.1f} (FMR {a['target_fmr']:g}), audit-logged")
    print(f"\nreport: {paths['html']} and {paths['json']} ({total:.1f} s, embedding {embedding_seconds:.1f} s)")
    return EXIT_OK


def _check_calibration_size(name: str, impostor_pairs: int, where: str, fmr: float) -> None:
    """A model's calibration must measure its default threshold (FMR 1e-3): else it could not compare."""
    from regard.errors import RegardError

    if impostor_pairs * fmr < 1:
        raise RegardError(
            f"--calibrate for model {name!r} needs at least {int(round(1 / fmr)):,} different-person pairs, to measure "
            f"its default threshold (FMR {fmr:g}); {where} has {impostor_pairs:,}: audit more photos"
        )


def _calibrated_lines(model: Any) -> list[str]:
    """What a model stored with a calibration may now do, with its default thresholds."""
    from regard.errors import RegardError
    from regard.match import DEFAULT_FMR, DEFAULT_FPIR, search_threshold

    table = model.table()
    lines = [
        f"model {model.name!r} ({model.id}) is calibrated now, in the model registry: it may compare and search",
        f"  default 1:1 threshold: {table.threshold_for(DEFAULT_FMR):.1f} (FMR {DEFAULT_FMR:g})",
    ]
    searches, missing = [], []
    for faces in (10, 1_000, 100_000):
        try:
            searches.append(f"{search_threshold(table, faces):.1f} for {faces:,} faces")
        except RegardError:  # too few false matches to model the 1:N tail
            missing.append(f"{faces:,}")
    if missing:
        searches.append(f"none for {', '.join(missing)} faces (too few false matches in this data to model them: audit more photos)")
    lines.append(f"  default search threshold (FPIR {DEFAULT_FPIR:g}): " + "; ".join(searches))
    return lines


def _apply(args: argparse.Namespace, audit: Any, store: Any, model: Any) -> dict[str, Any]:
    """Set the collection's search threshold from this audit's table, for the target FMR."""
    from regard.accuracy.findings import one_to_n_note
    from regard.errors import RegardError

    table = audit.table
    target = float(args.target_fmr)
    false_matches = target * table.impostor_pairs
    try:
        threshold = table.threshold_for_estimate(target)
        basis = "measured" if false_matches >= 20 else "extrapolated"
    except RegardError:  # too few false matches to fit the tail
        if false_matches < 1:
            raise RegardError(
                f"an FMR of {target:g} cannot be set from this audit: its {table.impostor_pairs:,} different-person "
                f"pairs measure FMRs down to {1 / table.impostor_pairs:.1g} and have too few false matches to "
                "extrapolate; audit more photos"
            ) from None
        threshold = table.threshold_for(target)
        basis = "measured from few false matches"
    before = store.get_collection(args.apply_to)
    reason = args.reason or f"regard audit: 1:1 FMR {target:g} on {audit.report['data']['name']}"
    store.set_threshold(
        args.apply_to,
        threshold,
        actor=args.actor,
        reason=reason,
        source={
            "tool": "regard audit",
            "data": audit.report["data"]["name"],
            "table": table.source,
            "target_fmr": target,
            "basis": basis,
            "genuine_pairs": table.genuine_pairs,
            "impostor_pairs": table.impostor_pairs,
            "fnmr": table.fnmr_at(threshold),
            "report": str(Path(args.out) / "report.json"),
            **({} if model.built_in else {"model": model.id}),
        },
    )
    return {
        "collection": args.apply_to,
        "collection_faces": before.face_count,
        "target_fmr": target,
        "threshold": threshold,
        "basis": basis,
        "actor": args.actor,
        "reason": reason,
        "one_to_n": one_to_n_note(table, threshold, sizes=tuple(sorted({10, 100, 1_000, 10_000, 100_000, max(1, before.face_count)}))),
    }


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, file=sys.stderr)


def add_audit_command(sub: Any) -> None:
    """Add `regard audit` to the `regard` parser."""
    from regard.accuracy.dataset import DEFAULT_IMPOSTOR_PAIRS, DEFAULT_SEED

    p = sub.add_parser(
        "audit",
        help="measure accuracy (overall and per group) on your own labelled photos; calibrate thresholds",
        description=(
            "Measure Regard's accuracy on labelled photos: an LFW-style pairs file, or a folder of "
            "person/photo folders. Writes report.html (self-contained), report.json and the plots to --out."
        ),
    )
    p.add_argument("data", metavar="DATA", help="a pairs file (`name i j` / `name1 i name2 j`) or a folder of person folders")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the report")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--images", metavar="ROOT", help="image folder of a pairs file (default: lfw/ beside it, else its folder)")
    p.add_argument("--name", help="the data's name in the report (default: from its path)")
    p.add_argument("--groups", metavar="CSV", help="person,group lines supplied by the auditor (Regard never infers groups)")
    p.add_argument("--threshold", type=float, help="the score threshold to report error rates at (default: Regard's, FMR 1e-3)")
    p.add_argument("--genuine-pairs", type=int, metavar="N", help="folders: use a sample of N same-person pairs (default: all)")
    p.add_argument(
        "--impostor-pairs", type=int, metavar="N", default=DEFAULT_IMPOSTOR_PAIRS,
        help="folders: different-person pairs, all of them up to N, else a sample of N (default %(default)s)",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the pair sampling (default %(default)s)")
    p.add_argument(
        "--calibrate", nargs="?", const="", metavar="TABLE.json",
        help="write the score -> FMR/FNMR threshold table measured here (default DIR/calibration.json); "
        "with --model, also store it with that model, which may then compare and search",
    )
    p.add_argument(
        "--model", metavar="NAME",
        help="the recognition model to audit: a registered model's name or id (`regard models`); default: the built-in one",
    )
    p.add_argument("--apply-to", metavar="COLLECTION", help="set this collection's search threshold from this audit (audit-logged)")
    p.add_argument("--target-fmr", type=float, metavar="RATE", help="with --apply-to: the 1:1 false-match rate, e.g. 1e-5")
    p.add_argument("--reason", help="with --apply-to: why, for the audit log")
    add_store_option(p, "with --apply-to: " + STORE_HELP)
    p.add_argument("--actor", default=default_actor(), help="with --apply-to: who is acting (default $REGARD_ACTOR or your user name)")
    p.add_argument("--append-card", metavar="MODEL_CARD.md", help="append the headline figures to this model card")
    p.set_defaults(func=run)
