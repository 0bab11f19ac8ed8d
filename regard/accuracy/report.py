"""The accuracy audit's figures: from embedded photos to the report (a dict with every number, which
`write` saves as JSON beside its JSON Schema and an HTML page) and a threshold table in
`regard.match`'s format. The words are in `findings.py`, the page in `html.py`, the schema and its
validator in `schema.py`.

    dataset = regard.accuracy.dataset.load(Path("photos/"))
    embedded = regard.accuracy.dataset.embed_photos(dataset)
    audit = build(dataset, embedded, groups=read_groups(Path("groups.csv")))
    write(audit, Path("audit-out"))              # report.html, report.json, report.schema.json, PNGs
    audit.table                                  # a ThresholdTable, as `regard audit --calibrate` writes

Pairs where a photo gave no face are left out of the score-based figures (a comparison cannot be
made), counted in the failure-to-enrol figures, and counted as misses in "FNMR with failures to
enrol", as NIST counts them.

An operator's model (`build(..., model=recognizer)`, photos embedded by `embed_photos(...,
model=recognizer)`) is scored on its own scale (`Recognizer.distance_at_zero`) everywhere, and
compared with its own calibration where the built-in model's is the shipped table. An uncalibrated
model has no table to compare with: those figures are null (the report says it is not calibrated),
and its accuracy is reported at the threshold a calibration on this data would give it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from regard.accuracy import metrics, plots
from regard.accuracy.dataset import Dataset, Embedded, pair_scores
from regard.accuracy.findings import findings
from regard.accuracy.html import render_html
from regard.accuracy.schema import SCHEMA, SCHEMA_VERSION, validate
from regard.errors import RegardError
from regard.match import (
    _GRID,
    DEFAULT_FMR,
    ThresholdTable,
    calibrate,
    fit_search_tail,
    search_threshold,
)

if TYPE_CHECKING:
    from regard.models.recognizer import Recognizer

DEFAULT_TARGETS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)
IDENTIFICATION_FPIR = 1e-2
BOOTSTRAP_SEED = 0
GROUP_NOTE = (
    "Groups were supplied by the auditor (a person,group file). Regard never infers race, ethnicity, "
    "religion, gender, age or any other group from a face; it only measures error rates for the "
    "groups it is given."
)
INDEPENDENCE_NOTE = (
    "Rate intervals marked 'pairs' are exact binomial (Clopper-Pearson) 95 % intervals, which treat "
    "every pair as independent. Pairs are not independent: each person takes part in many, and a few "
    "look-alike people can make most of the false matches. Per-group intervals marked 'persons', and "
    "every ratio's interval, come from a bootstrap that draws each group's persons again with "
    "replacement, which accounts for that; read group differences from those."
)


@dataclass
class Audit:
    """A finished audit: the report's numbers, its pictures, and the threshold table measured."""

    report: dict[str, Any]
    pictures: dict[str, bytes]  # file name -> PNG
    table: ThresholdTable
    genuine: np.ndarray = field(repr=False)  # scores of the genuine pairs with both faces found
    impostor: np.ndarray = field(repr=False)


# ---------------------------------------------------------------- building the report


def build(
    dataset: Dataset,
    embedded: Embedded,
    *,
    threshold: float | None = None,
    groups: dict[str, str] | None = None,
    groups_source: str | None = None,
    targets: tuple[float, ...] = DEFAULT_TARGETS,
    embedding_seconds: float | None = None,
    model: Recognizer | None = None,
) -> Audit:
    """Every figure of the report, computed from the embedded photos of `dataset`. `model` is the
    recognition model that embedded them (None: the built-in one): its score scale and, where it has
    one, its calibration are used (see the module's docstring)."""
    from regard.models.recognizer import BUILT_IN

    started = time.perf_counter()
    recognizer = model or BUILT_IN
    scale = recognizer.distance_at_zero
    if embedded.vectors.shape[1] != recognizer.width:
        raise RegardError(
            f"the photos were embedded with {embedded.vectors.shape[1]}-d vectors, but model {recognizer.name!r} gives {recognizer.width}"
        )
    shipped = recognizer.table() if recognizer.calibrated else None  # the built-in's: the shipped table
    threshold_source = "given with --threshold"
    if threshold is None and shipped is not None:
        threshold = shipped.threshold_for(DEFAULT_FMR)
        threshold_source = (
            f"Regard's default 1:1 threshold (FMR {DEFAULT_FMR:g} on the shipped table)"
            if recognizer.built_in
            else f"model {recognizer.name}'s default 1:1 threshold (FMR {DEFAULT_FMR:g} on its calibration)"
        )
    if threshold is not None and not 0 <= threshold <= 100:
        raise RegardError(f"a threshold is a score from 0 to 100, not {threshold}")
    warnings: list[str] = []

    has_face = embedded.has_face
    if not has_face.any():
        raise RegardError(f"no face was found in any of the {len(dataset.photos)} photos of {dataset.name}")
    scores = pair_scores(embedded.vectors, dataset.pairs, scale=scale)
    usable = ~np.isnan(scores)
    same = dataset.pairs.same
    genuine, impostor = scores[same & usable], scores[~same & usable]
    if genuine.size == 0 or impostor.size == 0:
        kind = "same-person" if genuine.size == 0 else "different-person"
        raise RegardError(f"every {kind} pair has a photo where no face was found: nothing to measure")

    enrolment = _enrolment(dataset, embedded)
    if enrolment["no_face"]:
        warnings.append(
            f"{enrolment['no_face']} of {enrolment['photos']} photos gave no face (or could not be read); "
            f"their {int((same & ~usable).sum())} same-person and {int((~same & ~usable).sum())} "
            "different-person pairs are left out of the score figures"
        )

    table = calibrate(genuine, impostor, _table_source(dataset, enrolment, recognizer))
    if threshold is None:  # an uncalibrated model: no default threshold of its own yet
        threshold, threshold_source = _uncalibrated_threshold(recognizer, table, genuine, impostor)
    verification = _verification(genuine, impostor, threshold, targets, same, usable)
    try:  # the 1:N model, where the photos are of enough people
        faces = np.nonzero(has_face)[0]
        tail = fit_search_tail(embedded.vectors[faces], [dataset.persons[i] for i in faces], scale=scale)
        table = dataclasses.replace(table, search_tail=tail)
    except RegardError as exc:
        warnings.append(f"no 1:N model in the threshold table ({exc}); searches will use N x FMR")
    curves = {"all pairs": metrics.roc(genuine, impostor)}
    points = {"all pairs": (verification["at_threshold"]["fmr"], 1 - verification["at_threshold"]["fnmr"])}

    group_section = None
    if groups is not None:
        group_section = _groups(dataset, embedded, scores, usable, groups, threshold, warnings, curves, points)
        group_section["source"] = groups_source

    identification = (
        _identification(dataset, embedded, threshold, warnings, shipped, recognizer) if dataset.kind == "folders" else None
    )

    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "regard_version": _regard_version(),
        "models": _models(recognizer),
        "data": {
            "name": dataset.name,
            "kind": dataset.kind,
            "root": str(dataset.root),
            "photos": len(dataset.photos),
            "persons": dataset.person_count,
            "genuine_pairs_available": dataset.genuine_available,
            "impostor_pairs_available": dataset.impostor_available,
            "genuine_pairs": int(same.sum()),
            "impostor_pairs": int((~same).sum()),
            "sampling_seed": dataset.seed,
        },
        "threshold": {
            "score": float(threshold),
            "source": threshold_source,
            # The model's own table (the built-in model's ships with Regard); null when it has none.
            "shipped_table": None if shipped is None else shipped.source,
            "shipped_fmr": None if shipped is None else shipped.fmr_at(threshold),
            "shipped_fnmr": None if shipped is None else shipped.fnmr_at(threshold),
        },
        "enrolment": enrolment,
        "verification": verification,
        "identification": identification,
        "groups": group_section,
        "calibration": {
            "source": table.source,
            "genuine_pairs": table.genuine_pairs,
            "impostor_pairs": table.impostor_pairs,
            "summary": table.summary(tuple(t for t in targets if t * table.impostor_pairs >= 1)),
            "path": None,
        },
        "applied": None,
        "findings": [],
        "warnings": warnings,
        "notes": [INDEPENDENCE_NOTE] + ([GROUP_NOTE] if groups is not None else []),
        "timing": {"embedding_seconds": embedding_seconds, "metrics_seconds": None},
    }
    report["findings"] = findings(report)

    pictures = {
        "roc.png": plots.roc_plot(curves, points),
        "det.png": plots.det_plot(curves, points),
        "scores.png": plots.score_plot(genuine, impostor, threshold),
    }
    if group_section is not None and group_section["rows"]:
        rows = group_section["rows"]
        pictures["groups.png"] = plots.group_plot(
            [r["group"] for r in rows],
            [r["fmr"] for r in rows],
            [_plot_interval(r["fmr_ci_persons"]) for r in rows],
            [r["fnmr"] for r in rows],
            [_plot_interval(r["fnmr_ci_persons"]) for r in rows],
            threshold,
        )
    report["timing"]["metrics_seconds"] = round(time.perf_counter() - started, 3)
    return Audit(report=report, pictures=pictures, table=table, genuine=genuine, impostor=impostor)


def _plot_interval(ci: list[float | None] | None) -> tuple[float, float] | None:
    return None if not ci or ci[0] is None or ci[1] is None else (ci[0], ci[1])


def _table_source(dataset: Dataset, enrolment: dict[str, Any], model: Recognizer) -> str:
    head = f"{dataset.name}: {len(dataset.photos)} photos of {dataset.person_count} people ({enrolment['no_face']} without a face)"
    by = "" if model.built_in else f", embedded by model {model.id}"
    if dataset.kind == "pairs":
        return f"{head}, the {len(dataset.pairs)} listed pairs{by}"
    if dataset.seed is None:
        return f"{head}, every pair{by}"
    return (
        f"{head}, {int(dataset.pairs.same.sum())} same-person and {int((~dataset.pairs.same).sum())} "
        f"different-person pairs (sampled, seed {dataset.seed}){by}"
    )


def _uncalibrated_threshold(model: Recognizer, table: ThresholdTable, genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, str]:
    """The threshold an uncalibrated model's figures are reported at: the default (FMR 1e-3) that
    this audit's table would give it once stored (`--calibrate`); where this data cannot measure an
    FMR of 1e-3, its equal-error-rate threshold."""
    try:
        return table.threshold_for(DEFAULT_FMR), (
            f"model {model.name} is not calibrated: the default 1:1 threshold a calibration on this data "
            f"would give it (FMR {DEFAULT_FMR:g} measured here)"
        )
    except RegardError:
        e = metrics.eer(metrics.roc(genuine, impostor))
        return float(np.clip(round(e.threshold, 1), 0.0, 100.0)), (
            f"model {model.name} is not calibrated, and {table.impostor_pairs:,} different-person pairs cannot "
            f"measure an FMR of {DEFAULT_FMR:g}: the equal-error-rate threshold on this data"
        )


def _enrolment(dataset: Dataset, embedded: Embedded) -> dict[str, Any]:
    n = len(dataset.photos)
    no_face = [k for k in range(n) if embedded.quality[k] is None]
    low = [k for k in range(n) if embedded.quality[k] == "LOW"]
    return {
        "photos": n,
        "no_face": len(no_face),
        "unreadable": len(embedded.errors),
        "low_quality": len(low),
        "no_face_rate": len(no_face) / n,
        "low_quality_rate": len(low) / n,
        "fte_rate": (len(no_face) + len(low)) / n,
        "no_face_examples": [str(dataset.photos[k]) for k in no_face[:20]],
        "low_quality_examples": [str(dataset.photos[k]) for k in low[:20]],
        "rule": "a failure to enrol is a photo with no face, or whose main face is LOW quality "
        "(refused by enrolment's default MEDIUM gate); LOW faces still take part in the pair figures",
    }


def _rate(errors: int, trials: int) -> dict[str, Any]:
    if trials == 0:
        return {"rate": None, "ci": None, "errors": 0, "trials": 0}
    return {"rate": errors / trials, "ci": list(metrics.clopper_pearson(errors, trials)), "errors": errors, "trials": trials}


def _verification(
    genuine: np.ndarray,
    impostor: np.ndarray,
    threshold: float,
    targets: tuple[float, ...],
    same: np.ndarray,
    usable: np.ndarray,
) -> dict[str, Any]:
    curve = metrics.roc(genuine, impostor)
    e = metrics.eer(curve)
    rows, unmeasurable = [], []
    for target in targets:
        point = metrics.operating_point(curve, target)
        if point is None:
            unmeasurable.append(target)
            continue
        rows.append(
            {
                "target_fmr": target,
                "threshold": _num(point.threshold),
                "tar": point.accept_rate,
                "fnmr": 1 - point.accept_rate,
                "fmr": point.error_rate,
                "false_matches": point.errors,
                "impostor_pairs": point.trials,
                "allowed_false_matches": math.floor(target * point.trials),
                "few_errors": point.few_errors,
            }
        )
    fm, n_imp, fnm, n_gen = metrics.rates_at(genuine, impostor, threshold)
    missing_genuine = int((same & ~usable).sum())
    fmr, fnmr = _rate(fm, n_imp), _rate(fnm, n_gen)
    fmr_grid, fnmr_grid = metrics.grid_curve(genuine, impostor, _GRID)
    return {
        "genuine_pairs": int(genuine.size),
        "impostor_pairs": int(impostor.size),
        "genuine_pairs_without_face": missing_genuine,
        "impostor_pairs_without_face": int((~same & ~usable).sum()),
        "auc": metrics.auc(curve),
        "eer": e.rate,
        "eer_threshold": e.threshold,
        "tar_at_fmr": rows,
        "unmeasurable_fmr_targets": unmeasurable,
        "at_threshold": {
            "threshold": float(threshold),
            "fmr": fmr["rate"],
            "fmr_ci": fmr["ci"],
            "false_matches": fm,
            "impostor_pairs": n_imp,
            "fnmr": fnmr["rate"],
            "fnmr_ci": fnmr["ci"],
            "false_non_matches": fnm,
            "genuine_pairs": n_gen,
            "fnmr_with_fte": (fnm + missing_genuine) / (n_gen + missing_genuine),
        },
        "curve": {
            "scores": [float(s) for s in _GRID],
            "fmr": [float(f) for f in fmr_grid],
            "fnmr": [float(f) for f in fnmr_grid],
        },
    }


def _groups(
    dataset: Dataset,
    embedded: Embedded,
    scores: np.ndarray,
    usable: np.ndarray,
    groups: dict[str, str],
    threshold: float,
    warnings: list[str],
    curves: dict[str, metrics.Roc],
    points: dict[str, tuple[float, float]],
) -> dict[str, Any]:
    persons = np.array(dataset.persons)
    in_data = set(dataset.persons)
    ungrouped = sorted(in_data - set(groups))
    if ungrouped:
        warnings.append(
            f"{len(ungrouped)} of {len(in_data)} persons in the data have no group in the groups file "
            f"(e.g. {', '.join(ungrouped[:3])}); they count in the overall figures only"
        )
    absent = sorted(set(groups) - in_data)
    if absent:
        warnings.append(f"{len(absent)} persons of the groups file are not in the data (e.g. {', '.join(absent[:3])})")
    if len(ungrouped) == len(in_data):
        raise RegardError("no person of the data is in the groups file: check that its names are the folder names")
    photo_group = np.array([groups.get(p, "") for p in dataset.persons], dtype=object)
    names = sorted(in_data)
    person_index = {p: k for k, p in enumerate(names)}
    photo_person = np.array([person_index[p] for p in dataset.persons], dtype=np.int64)
    pa, pb = photo_person[dataset.pairs.a], photo_person[dataset.pairs.b]
    group_names = sorted({groups[p] for p in in_data if p in groups})
    weights = metrics.person_weights(
        [np.array([person_index[p] for p in names if groups.get(p) == g]) for g in group_names],
        len(names),
        metrics.BOOTSTRAP_REPLICATES,
        BOOTSTRAP_SEED,
    )
    replicates: dict[tuple[str, str], np.ndarray] = {}
    ga, gb = photo_group[dataset.pairs.a], photo_group[dataset.pairs.b]
    same = dataset.pairs.same
    rows: list[dict[str, Any]] = []
    for group in group_names:
        members = photo_group == group
        n_persons = len(set(persons[members].tolist()))
        in_group = (ga == group) & (gb == group) & usable
        g_scores, i_scores = scores[in_group & same], scores[in_group & ~same]
        fm, n_imp, fnm, n_gen = metrics.rates_at(g_scores, i_scores, threshold)
        fmr, fnmr = _rate(fm, n_imp), _rate(fnm, n_gen)
        sel_i, sel_g = in_group & ~same, in_group & same
        replicates[(group, "fmr")] = metrics.bootstrap_rates(pa[sel_i], pb[sel_i], scores[sel_i] >= threshold, weights)
        replicates[(group, "fnmr")] = metrics.bootstrap_rates(pa[sel_g], pb[sel_g], scores[sel_g] < threshold, weights)
        if n_persons == 1:
            warnings.append(f"group {group!r} has one person: there are no different-person pairs within it, so its FMR cannot be measured")
        elif n_imp == 0:
            warnings.append(f"group {group!r} has no different-person pairs with faces found: its FMR cannot be measured")
        if n_gen == 0:
            warnings.append(f"group {group!r} has no person with two photos (with faces found): its FNMR cannot be measured")
        row: dict[str, Any] = {
            "group": group,
            "persons": n_persons,
            "photos": int(members.sum()),
            "no_face": int((members & ~embedded.has_face).sum()),
            "low_quality": int(sum(1 for k in np.flatnonzero(members) if embedded.quality[k] == "LOW")),
            "genuine_pairs": n_gen,
            "impostor_pairs": n_imp,
            "fmr": fmr["rate"],
            "fmr_ci": fmr["ci"],
            "fmr_ci_persons": _interval(replicates[(group, "fmr")]) if n_imp else None,
            "false_matches": fm,
            "fnmr": fnmr["rate"],
            "fnmr_ci": fnmr["ci"],
            "fnmr_ci_persons": _interval(replicates[(group, "fnmr")]) if n_gen else None,
            "false_non_matches": fnm,
            "eer": None,
            "fmr_ratio": None,
            "fmr_ratio_ci": None,
            "fnmr_ratio": None,
            "fnmr_ratio_ci": None,
        }
        if n_gen and n_imp:
            curve = metrics.roc(g_scores, i_scores)
            row["eer"] = metrics.eer(curve).rate
            curves[f"group {group}"] = curve
            points[f"group {group}"] = (fmr["rate"], 1 - fnmr["rate"])
        rows.append(row)
    best_fmr = _best(rows, "fmr", "false_matches", "impostor_pairs")
    best_fnmr = _best(rows, "fnmr", "false_non_matches", "genuine_pairs")
    for row in rows:
        for kind, best in (("fmr", best_fmr), ("fnmr", best_fnmr)):
            if best is None or row[kind] is None or best[kind] == 0:
                continue  # no ratio to a best group without errors
            row[f"{kind}_ratio"] = row[kind] / best[kind]
            with np.errstate(invalid="ignore", divide="ignore"):
                ratios = replicates[(row["group"], kind)] / replicates[(best["group"], kind)]
            row[f"{kind}_ratio_ci"] = _interval(ratios)
    cross = (ga != gb) & (ga != "") & (gb != "") & usable & ~same
    cfm = int(np.count_nonzero(scores[cross] >= threshold))
    cross_rate = _rate(cfm, int(cross.sum()))
    return {
        "source": None,
        "note": GROUP_NOTE,
        "threshold": float(threshold),
        "rows": rows,
        "best_fmr_group": best_fmr["group"] if best_fmr else None,
        "best_fnmr_group": best_fnmr["group"] if best_fnmr else None,
        "cross_group": {"impostor_pairs": cross_rate["trials"], "false_matches": cfm, "fmr": cross_rate["rate"], "fmr_ci": cross_rate["ci"]},
        "ungrouped_persons": len(ungrouped),
        "bootstrap": {"replicates": metrics.BOOTSTRAP_REPLICATES, "seed": BOOTSTRAP_SEED, "unit": "persons, drawn again within each group"},
    }


def _interval(values: np.ndarray) -> list[float | None] | None:
    lo, hi = metrics.percentile_interval(values)
    return None if lo is None and hi is None else [lo, hi]


def _best(rows: list[dict[str, Any]], rate: str, errors: str, trials: str) -> dict[str, Any] | None:
    """The group with the lowest measurable rate (ties: the one measured on more pairs)."""
    measured = [r for r in rows if r[rate] is not None]
    return min(measured, key=lambda r: (r[rate], -r[trials])) if measured else None


def _identification(
    dataset: Dataset,
    embedded: Embedded,
    threshold: float,
    warnings: list[str],
    shipped: ThresholdTable | None,
    model: Recognizer,
) -> dict[str, Any] | None:
    """Gallery: the first usable photo of each person with at least two usable photos; mated probes:
    their other photos; non-mated probes: the photos of persons with one usable photo. The default
    search threshold is the model's own (from `shipped`, its table); none for an uncalibrated model."""
    ok = embedded.has_face
    by_person: dict[str, list[int]] = {}
    for k, person in enumerate(dataset.persons):
        if ok[k]:
            by_person.setdefault(person, []).append(k)
    gallery = [ks[0] for ks in by_person.values() if len(ks) >= 2]
    probes = [k for ks in by_person.values() for k in (ks[1:] if len(ks) >= 2 else ks)]
    if not gallery:
        warnings.append("no person has two photos with a face found: no 1:N figures")
        return None
    result = metrics.identification(
        embedded.vectors[gallery],
        np.array([dataset.persons[k] for k in gallery]),
        embedded.vectors[probes],
        np.array([dataset.persons[k] for k in probes]),
        scale=model.distance_at_zero,
    )
    point = result.at_fpir(IDENTIFICATION_FPIR)
    if point is None:
        warnings.append(
            f"1:N: {result.non_mated} searches of people not enrolled are too few to measure an FPIR of "
            f"{IDENTIFICATION_FPIR:g} (at least {int(1 / IDENTIFICATION_FPIR)} are needed: persons with one photo)"
        )
    at_default = None
    if shipped is not None:
        try:
            default_t = search_threshold(shipped, result.gallery)
        except RegardError as exc:  # an operator's calibration with too few false matches for a tail
            warnings.append(f"1:N: model {model.name}'s calibration gives no default search threshold for {result.gallery} faces ({exc})")
        else:
            fpir_d, fnir_d = result.fpir_fnir(default_t)
            at_default = {"threshold": default_t, "fpir": _num(fpir_d), "fnir": _num(fnir_d)}
    fpir_t, fnir_t = result.fpir_fnir(threshold)
    return {
        "split": "gallery: the first photo of each person with at least two photos with a face; mated "
        "searches: their other photos; non-mated searches: the photos of persons with one",
        "gallery": result.gallery,
        "mated_searches": result.mated,
        "non_mated_searches": result.non_mated,
        "rank1": _num(result.rank1),
        "at_fpir": None
        if point is None
        else {
            "target_fpir": IDENTIFICATION_FPIR,
            "threshold": _num(point.threshold),
            "fpir": point.error_rate,
            "fnir": 1 - point.accept_rate,
            "non_mated_with_candidate": point.errors,
            "few_errors": point.few_errors,
        },
        "at_default_search_threshold": at_default,
        "at_threshold": {"threshold": float(threshold), "fpir": _num(fpir_t), "fnir": _num(fnir_t)},
    }


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _regard_version() -> str:
    import regard

    return regard.__version__


OPERATOR_PACKAGE = "(supplied by the operator)"


def _models(model: Recognizer | None = None) -> list[dict[str, Any]]:
    """The models the audit ran: Regard's own (detector and, unless another embedded the faces, its
    recognition model) with their packages' versions, then an operator's recognition model with its
    id, family, width, source and whether it had a calibration when the audit ran."""
    from importlib import metadata

    from regard.models.recognizer import BUILT_IN
    from regard.models.registry import ALL_MODELS

    operator = model is not None and not model.built_in
    out = []
    for m in ALL_MODELS:
        if operator and m.name == BUILT_IN.name:
            continue  # the built-in recognition model embedded nothing
        try:
            version = metadata.version(m.package)
        except metadata.PackageNotFoundError:
            version = None
        out.append({"name": m.name, "package": m.package, "package_version": version, "sha256": m.sha256, "license": m.license})
    if operator:
        assert model is not None
        out.append(
            {
                "name": model.name,
                "package": OPERATOR_PACKAGE,
                "package_version": None,
                "sha256": model.sha256,
                "license": model.license,
                "id": model.id,
                "family": model.family,
                "width": model.width,
                "source": model.source,
                "calibrated": model.calibrated,
            }
        )
    return out


# ---------------------------------------------------------------- writing


def write(audit: Audit, out: Path) -> dict[str, Path]:
    """report.json, report.schema.json, report.html and the PNGs, in `out` (created if needed).
    The report is checked against its schema before it is written."""
    out.mkdir(parents=True, exist_ok=True)
    problems = validate(audit.report, SCHEMA)
    if problems:
        raise RegardError("the report does not match its schema: " + "; ".join(problems[:5]))
    paths = {
        "json": out / "report.json",
        "schema": out / "report.schema.json",
        "html": out / "report.html",
    }
    paths["json"].write_text(json.dumps(audit.report, indent=1, allow_nan=False) + "\n")
    paths["schema"].write_text(json.dumps(SCHEMA, indent=1) + "\n")
    for name, png in audit.pictures.items():
        (out / name).write_bytes(png)
        paths[name] = out / name
    paths["html"].write_text(render_html(audit.report, audit.pictures))
    return paths
