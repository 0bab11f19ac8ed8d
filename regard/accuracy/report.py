"""The accuracy audit: from embedded photos to a report (JSON with every number, its JSON Schema, a
self-contained HTML page with the plots embedded) and a threshold table in `regard.match`'s format.

    dataset = regard.accuracy.dataset.load(Path("photos/"))
    embedded = regard.accuracy.dataset.embed_photos(dataset)
    audit = build(dataset, embedded, groups=read_groups(Path("groups.csv")))
    write(audit, Path("audit-out"))              # report.html, report.json, report.schema.json, PNGs
    audit.table                                  # a ThresholdTable, as `regard audit --calibrate` writes

Pairs where a photo gave no face are left out of the score-based figures (a comparison cannot be
made), counted in the failure-to-enrol figures, and counted as misses in "FNMR with failures to
enrol", as NIST counts them.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from regard.accuracy import metrics, plots
from regard.accuracy.dataset import Dataset, Embedded, pair_scores
from regard.errors import RegardError
from regard.match import (
    _GRID,
    DEFAULT_FMR,
    ThresholdTable,
    calibrate,
    default_table,
    fit_search_tail,
    search_threshold,
)

SCHEMA_VERSION = 1
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
) -> Audit:
    """Every figure of the report, computed from the embedded photos of `dataset`."""
    started = time.perf_counter()
    shipped = default_table()
    threshold_source = "given with --threshold"
    if threshold is None:
        threshold = shipped.threshold_for(DEFAULT_FMR)
        threshold_source = f"Regard's default 1:1 threshold (FMR {DEFAULT_FMR:g} on the shipped table)"
    if not 0 <= threshold <= 100:
        raise RegardError(f"a threshold is a score from 0 to 100, not {threshold}")
    warnings: list[str] = []

    has_face = embedded.has_face
    if not has_face.any():
        raise RegardError(f"no face was found in any of the {len(dataset.photos)} photos of {dataset.name}")
    scores = pair_scores(embedded.vectors, dataset.pairs)
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

    verification = _verification(genuine, impostor, threshold, targets, same, usable)
    table = calibrate(genuine, impostor, _table_source(dataset, enrolment))
    try:  # the 1:N model, where the photos are of enough people
        faces = np.nonzero(has_face)[0]
        tail = fit_search_tail(embedded.vectors[faces], [dataset.persons[i] for i in faces])
        table = dataclasses.replace(table, search_tail=tail)
    except RegardError as exc:
        warnings.append(f"no 1:N model in the threshold table ({exc}); searches will use N x FMR")
    curves = {"all pairs": metrics.roc(genuine, impostor)}
    points = {"all pairs": (verification["at_threshold"]["fmr"], 1 - verification["at_threshold"]["fnmr"])}

    group_section = None
    if groups is not None:
        group_section = _groups(dataset, embedded, scores, usable, groups, threshold, warnings, curves, points)
        group_section["source"] = groups_source

    identification = _identification(dataset, embedded, threshold, warnings) if dataset.kind == "folders" else None

    shipped_fmr = shipped.fmr_at(threshold)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "regard_version": _regard_version(),
        "models": _models(),
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
            "shipped_table": shipped.source,
            "shipped_fmr": shipped_fmr,
            "shipped_fnmr": shipped.fnmr_at(threshold),
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


def _table_source(dataset: Dataset, enrolment: dict[str, Any]) -> str:
    head = f"{dataset.name}: {len(dataset.photos)} photos of {dataset.person_count} people ({enrolment['no_face']} without a face)"
    if dataset.kind == "pairs":
        return f"{head}, the {len(dataset.pairs)} listed pairs"
    if dataset.seed is None:
        return f"{head}, every pair"
    return f"{head}, {int(dataset.pairs.same.sum())} same-person and {int((~dataset.pairs.same).sum())} different-person pairs (sampled, seed {dataset.seed})"


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
                "allowed_false_matches": int(math.floor(target * point.trials)),
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
    group_names = sorted(set(groups[p] for p in in_data if p in groups))
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


def _identification(dataset: Dataset, embedded: Embedded, threshold: float, warnings: list[str]) -> dict[str, Any] | None:
    """Gallery: the first usable photo of each person with at least two usable photos; mated probes:
    their other photos; non-mated probes: the photos of persons with one usable photo."""
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
    )
    point = result.at_fpir(IDENTIFICATION_FPIR)
    if point is None:
        warnings.append(
            f"1:N: {result.non_mated} searches of people not enrolled are too few to measure an FPIR of "
            f"{IDENTIFICATION_FPIR:g} (at least {int(1 / IDENTIFICATION_FPIR)} are needed: persons with one photo)"
        )
    default_t = search_threshold(default_table(), result.gallery)
    fpir_d, fnir_d = result.fpir_fnir(default_t)
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
        "at_default_search_threshold": {"threshold": default_t, "fpir": _num(fpir_d), "fnir": _num(fnir_d)},
        "at_threshold": {"threshold": float(threshold), "fpir": _num(fpir_t), "fnir": _num(fnir_t)},
    }


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _regard_version() -> str:
    import regard

    return regard.__version__


def _models() -> list[dict[str, Any]]:
    from importlib import metadata

    from regard.models.registry import ALL_MODELS

    out = []
    for m in ALL_MODELS:
        try:
            version = metadata.version(m.package)
        except metadata.PackageNotFoundError:
            version = None
        out.append({"name": m.name, "package": m.package, "package_version": version, "sha256": m.sha256, "license": m.license})
    return out


# ---------------------------------------------------------------- plain-language findings


def one_in(rate: float) -> str:
    """'1 in 1,230' for people to read."""
    if rate <= 0:
        return "none"
    n = 1 / rate
    return f"1 in {n:,.0f}" if n >= 10 else f"1 in {n:.1f}"


def _false_match_sentence(errors: int, trials: int, ci: list[float | None] | None, who: str, over: str = "") -> str:
    """'about 1 in N comparisons of different people <who> is a false match (...)'."""
    lo, hi = ci if ci else (None, None)
    bound = f"95 % upper bound{over}: {one_in(hi)}" if hi else "no interval"
    if errors == 0:
        return f"none of the {trials:,} comparisons of different people {who} was a false match ({bound})"
    if lo and hi:
        interval = f"95 % interval{over} {one_in(hi)} to {one_in(lo)}"
    elif hi:
        interval = bound
    else:
        interval = "no interval"
    return (
        f"about {one_in(errors / trials)} comparisons of different people {who} is a false match "
        f"({errors:,} of {trials:,}; {interval})"
    )


def findings(report: dict[str, Any]) -> list[str]:
    """Plain-language sentences for the top of the report."""
    out = []
    v, t = report["verification"], report["threshold"]
    at = v["at_threshold"]
    out.append(
        f"At the threshold {t['score']:.1f}, "
        f"{_false_match_sentence(at['false_matches'], at['impostor_pairs'], at['fmr_ci'], 'in ' + report['data']['name'])}; "
        f"{at['false_non_matches']:,} of {at['genuine_pairs']:,} comparisons of the same person "
        f"({100 * at['fnmr']:.1f} %) are missed."
    )
    shipped = t["shipped_fmr"]
    if at["fmr_ci"] and shipped < at["fmr_ci"][0]:
        out.append(
            f"That false-match rate is higher than the shipped table's {shipped:.2g} at this threshold: "
            "calibrate on this data (--calibrate) and set a stricter threshold (--apply-to)."
        )
    elif at["fmr_ci"] and shipped > at["fmr_ci"][1]:
        out.append(f"That false-match rate is lower than the shipped table's {shipped:.2g} at this threshold.")
    else:
        out.append(f"The shipped table's false-match rate at this threshold ({shipped:.2g}) is within this measurement's interval.")
    rows = {r["target_fmr"]: r for r in v["tar_at_fmr"]}
    if 1e-3 in rows:
        out.append(f"Equal error rate {100 * v['eer']:.2f} %; at FMR 1e-3 (threshold {rows[1e-3]['threshold']:.1f}) {100 * rows[1e-3]['tar']:.1f} % of same-person pairs match.")
    else:
        out.append(f"Equal error rate {100 * v['eer']:.2f} %.")
    e = report["enrolment"]
    out.append(
        f"{e['no_face']} of {e['photos']} photos gave no face and {e['low_quality']} only a LOW-quality face "
        f"(failure to enrol: {100 * e['fte_rate']:.1f} %)."
    )
    g = report["groups"]
    if g:
        for r in g["rows"]:
            if r["fmr"] is None:
                out.append(f"Group {r['group']}: the false-match rate cannot be measured ({r['impostor_pairs']} different-person pairs within it).")
                continue
            out.append(
                f"Group {r['group']}: at this threshold, "
                f"{_false_match_sentence(r['false_matches'], r['impostor_pairs'], r['fmr_ci_persons'], 'in the group', ' over persons')}."
            )
        worst = max((r for r in g["rows"] if r["fmr_ratio"] is not None), key=lambda r: r["fmr_ratio"], default=None)
        if worst is not None and worst["group"] != g["best_fmr_group"]:
            lo, hi = worst["fmr_ratio_ci"] or [None, None]
            verdict = (
                "a difference this data supports" if lo is not None and lo > 1 else "not distinguishable from no difference on this data"
            )
            lo_text = f"{lo:.2g}" if lo is not None else "?"
            hi_text = f"{hi:.2g}" if hi is not None else "unbounded"
            out.append(
                f"The highest group FMR, {worst['group']}'s, is {worst['fmr_ratio']:.2g} times the lowest "
                f"({g['best_fmr_group']}'s); 95 % interval over persons {lo_text} to {hi_text}: {verdict}."
            )
        elif g["best_fmr_group"] is not None and all(r["false_matches"] == 0 for r in g["rows"] if r["fmr"] is not None):
            out.append("No group had a false match at this threshold: the FMR ratios between groups cannot be measured.")
    ident = report["identification"]
    if ident:
        text = f"1:N with {ident['gallery']:,} persons enrolled: rank-1 rate {100 * ident['rank1']:.1f} % over {ident['mated_searches']:,} searches"
        if ident["at_fpir"]:
            a = ident["at_fpir"]
            text += f"; at FPIR {a['target_fpir']:g} (threshold {a['threshold']:.1f}) {100 * a['fnir']:.1f} % of enrolled people are missed (FNIR)"
        out.append(text + ".")
    return out


# ---------------------------------------------------------------- the 1:N meaning of an applied threshold


def one_to_n_note(table: ThresholdTable, threshold: float, sizes: tuple[int, ...] = (10, 100, 1_000, 10_000, 100_000)) -> dict[str, Any]:
    """What a fixed 1:1 threshold means in collections of several sizes: a search for someone not
    enrolled meets N faces, so its chance of any false candidate (FPIR) is about 1 - (1 - FMR)^N."""
    try:
        fmr = table.fmr_estimate(threshold)
    except RegardError:  # too few false matches to model the tail: the measured value
        fmr = table.fmr_at(threshold)
    rows = []
    for n in sizes:
        try:
            default: float | None = search_threshold(table, n)
        except RegardError:
            default = None
        rows.append({"faces": n, "fpir": 1 - (1 - fmr) ** n, "default_threshold": default})
    return {
        "threshold": threshold,
        "fmr": fmr,
        "rows": rows,
        "text": (
            f"The threshold {threshold:.1f} holds a 1:1 false-match rate of about {fmr:.2g}. A 1:N search "
            "compares the probe with every face in the collection, so for someone not enrolled the chance "
            "of at least one false candidate grows with the collection's size N, about N x FMR while that "
            "is small. Without an applied threshold Regard raises its search threshold with N instead, to "
            "keep that chance at 1 %."
        ),
    }


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


def model_card_section(report: dict[str, Any]) -> str:
    """A Markdown section with the audit's headline figures, to append to a model card."""
    v, d = report["verification"], report["data"]
    lines = [
        f"## Audit: {d['name']} ({report['generated_at'][:10]})",
        "",
        f"`regard audit` on {d['photos']:,} photos of {d['persons']:,} people: {v['genuine_pairs']:,} same-person "
        f"and {v['impostor_pairs']:,} different-person pairs (Regard {report['regard_version']}).",
        "",
        "| target FMR | threshold | FMR | TAR | false matches / pairs |",
        "|---|---|---|---|---|",
    ]
    for r in v["tar_at_fmr"]:
        few = " (few)" if r["few_errors"] else ""
        lines.append(f"| {r['target_fmr']:g} | {r['threshold']:.1f} | {r['fmr']:.2e} | {100 * r['tar']:.1f} % | {r['false_matches']} / {r['impostor_pairs']:,}{few} |")
    lines += ["", f"EER {100 * v['eer']:.2f} %, AUC {v['auc']:.5f}.", ""]
    lines += [f"- {f}" for f in report["findings"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- HTML


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; border-bottom: 1px solid #ccc;
     margin-top: 2rem; } .sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: right; } th { background: #f3f3f3; }
td.l, th.l { text-align: left; }
.findings li { margin: .3rem 0; } .warn { background: #fff4e0; border-left: 4px solid #e69500;
     padding: .4rem .8rem; } .note { color: #444; font-size: .9rem; }
figure { margin: 1rem 0; display: inline-block; width: 48%; vertical-align: top; }
figure.wide { width: 98%; } img { max-width: 100%; } figcaption { font-size: .85rem; color: #444; }
@media print { body { margin: 0; max-width: none; } figure { page-break-inside: avoid; }
               h2 { page-break-after: avoid; } }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def _ci(ci: list[float | None] | None, spec: str = ".2g") -> str:
    if not ci:
        return "–"
    lo, hi = ci
    return f"{_fmt(lo, spec)} – {'∞' if hi is None else _fmt(hi, spec)}"


def _img(pictures: dict[str, bytes], name: str, alt: str, caption: str, wide: bool = False) -> str:
    if name not in pictures:
        return ""
    data = base64.b64encode(pictures[name]).decode("ascii")
    cls = ' class="wide"' if wide else ""
    return (
        f'<figure{cls}><img src="data:image/png;base64,{data}" alt="{_e(alt)}" data-name="{_e(name)}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def render_html(report: dict[str, Any], pictures: dict[str, bytes]) -> str:
    """The report as one self-contained HTML page: no scripts, no external files, printable."""
    d, t, v, e = report["data"], report["threshold"], report["verification"], report["enrolment"]
    at = v["at_threshold"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Regard accuracy audit: {_e(d['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Accuracy audit: {_e(d['name'])}</h1>",
        f'<p class="sub">Regard {_e(report["regard_version"])} · {_e(report["generated_at"])} · '
        f"threshold {t['score']:.1f} ({_e(t['source'])})</p>",
        "<h2>Findings</h2><ul class='findings'>",
        *[f"<li>{_e(f)}</li>" for f in report["findings"]],
        "</ul>",
    ]
    if report["warnings"]:
        parts.append("<div class='warn'><strong>Warnings</strong><ul>")
        parts += [f"<li>{_e(w)}</li>" for w in report["warnings"]]
        parts.append("</ul></div>")

    parts.append("<h2>Data and models</h2><table>")
    sampling = "none (every pair)" if d["sampling_seed"] is None else f"random, seed {d['sampling_seed']}"
    for label, value in (
        ("data", d["name"]),
        ("layout", "LFW-style pairs file" if d["kind"] == "pairs" else "person folders"),
        ("folder", d["root"]),
        ("photos / persons", f"{d['photos']:,} / {d['persons']:,}"),
        ("same-person pairs (used / available)", f"{d['genuine_pairs']:,} / {d['genuine_pairs_available']:,}"),
        ("different-person pairs (used / available)", f"{d['impostor_pairs']:,} / {d['impostor_pairs_available']:,}"),
        ("sampling", sampling),
        ("shipped threshold table", t["shipped_table"]),
    ):
        parts.append(f"<tr><th class='l'>{_e(label)}</th><td class='l'>{_e(value)}</td></tr>")
    for m in report["models"]:
        parts.append(
            f"<tr><th class='l'>model {_e(m['name'])}</th><td class='l'>{_e(m['package'])} "
            f"{_e(m['package_version'] or '')} · sha256 {_e(m['sha256'][:16])}… · {_e(m['license'])}</td></tr>"
        )
    parts.append("</table>")

    parts.append("<h2>Verification (1:1)</h2>")
    parts.append(
        f"<p>{v['genuine_pairs']:,} same-person and {v['impostor_pairs']:,} different-person pairs with a face "
        f"in both photos. EER {100 * v['eer']:.2f} % (at score {v['eer_threshold']:.1f}); area under the ROC "
        f"{v['auc']:.5f}.</p>"
    )
    parts.append(
        "<table><tr><th>at threshold</th><th>rate</th><th>95 % interval</th><th>errors / pairs</th><th>in words</th></tr>"
        f"<tr><th class='l'>FMR {at['threshold']:.1f}</th><td>{_fmt(at['fmr'], '.3g')}</td><td>{_ci(at['fmr_ci'])}</td>"
        f"<td>{at['false_matches']:,} / {at['impostor_pairs']:,}</td><td class='l'>{one_in(at['fmr'])}</td></tr>"
        f"<tr><th class='l'>FNMR {at['threshold']:.1f}</th><td>{_fmt(at['fnmr'], '.3g')}</td><td>{_ci(at['fnmr_ci'])}</td>"
        f"<td>{at['false_non_matches']:,} / {at['genuine_pairs']:,}</td><td class='l'>{one_in(at['fnmr'])}</td></tr>"
        f"<tr><th class='l'>FNMR with failures to enrol</th><td>{_fmt(at['fnmr_with_fte'], '.3g')}</td><td>–</td>"
        f"<td>+{v['genuine_pairs_without_face']:,} pairs without a face</td><td></td></tr></table>"
    )
    parts.append(
        "<table><tr><th>target FMR</th><th>threshold</th><th>measured FMR</th><th>TAR</th><th>FNMR</th>"
        "<th>false matches / pairs</th><th>note</th></tr>"
    )
    for r in v["tar_at_fmr"]:
        note = f"fewer than 20 false matches allowed ({r['allowed_false_matches']}): rough" if r["few_errors"] else ""
        parts.append(
            f"<tr><td>{r['target_fmr']:g}</td><td>{_fmt(r['threshold'], '.1f')}</td><td>{r['fmr']:.2e}</td>"
            f"<td>{100 * r['tar']:.2f} %</td><td>{100 * r['fnmr']:.2f} %</td>"
            f"<td>{r['false_matches']:,} / {r['impostor_pairs']:,}</td><td class='l'>{_e(note)}</td></tr>"
        )
    for target in v["unmeasurable_fmr_targets"]:
        parts.append(
            f"<tr><td>{target:g}</td><td colspan='5'>not measurable: needs at least {1 / target:,.0f} different-person pairs</td><td></td></tr>"
        )
    parts.append("</table>")
    parts.append(_img(pictures, "roc.png", "ROC curve", "TAR against FMR over every pair (log scale)."))
    parts.append(_img(pictures, "det.png", "DET curve", "FNMR against FMR, log scales."))
    parts.append(_img(pictures, "scores.png", "Score distributions", "Scores of same-person and different-person pairs; dashed: the threshold.", wide=True))

    parts.append("<h2>Failure to enrol</h2>")
    parts.append(
        f"<p>{e['no_face']} of {e['photos']:,} photos gave no face ({e['unreadable']} could not be read), "
        f"{e['low_quality']} only a LOW-quality main face: failure-to-enrol rate {100 * e['fte_rate']:.2f} %. "
        f"<span class='note'>{_e(e['rule'])}.</span></p>"
    )
    if e["no_face_examples"]:
        parts.append(f"<p class='note'>No face: {_e(', '.join(e['no_face_examples']))}</p>")

    ident = report["identification"]
    if ident:
        parts.append("<h2>Identification (1:N)</h2>")
        parts.append(f"<p class='note'>{_e(ident['split'])}.</p><table><tr><th>figure</th><th>value</th></tr>")
        parts.append(f"<tr><th class='l'>gallery (persons enrolled)</th><td>{ident['gallery']:,}</td></tr>")
        parts.append(f"<tr><th class='l'>mated / non-mated searches</th><td>{ident['mated_searches']:,} / {ident['non_mated_searches']:,}</td></tr>")
        parts.append(f"<tr><th class='l'>rank-1 rate (no threshold)</th><td>{_fmt(ident['rank1'] and 100 * ident['rank1'], '.2f')} %</td></tr>")
        if ident["at_fpir"]:
            a = ident["at_fpir"]
            parts.append(
                f"<tr><th class='l'>FNIR at FPIR {a['target_fpir']:g} (threshold {a['threshold']:.1f})</th>"
                f"<td>{100 * a['fnir']:.2f} %</td></tr>"
            )
        for key, label in (("at_default_search_threshold", "Regard's default search threshold for this gallery"), ("at_threshold", "the audit's threshold")):
            x = ident[key]
            parts.append(
                f"<tr><th class='l'>at {_e(label)} ({x['threshold']:.1f}): FPIR / FNIR</th>"
                f"<td>{_fmt(x['fpir'], '.3g')} / {_fmt(x['fnir'], '.3g')}</td></tr>"
            )
        parts.append("</table>")

    g = report["groups"]
    if g:
        parts.append("<h2>Groups</h2>")
        parts.append(f"<p><strong>{_e(g['note'])}</strong> Groups file: {_e(g['source'] or '')}.</p>")
        parts.append(
            "<table><tr><th class='l'>group</th><th>persons</th><th>photos</th><th>FMR</th><th>95 % (pairs)</th>"
            "<th>95 % (persons)</th><th>false matches / pairs</th><th>FMR ratio to best</th><th>95 % (persons)</th><th>FNMR</th>"
            "<th>95 % (persons)</th><th>misses / pairs</th><th>EER</th></tr>"
        )
        for r in g["rows"]:
            parts.append(
                f"<tr><td class='l'>{_e(r['group'])}</td><td>{r['persons']:,}</td><td>{r['photos']:,}</td>"
                f"<td>{_fmt(r['fmr'])}</td><td>{_ci(r['fmr_ci'])}</td><td>{_ci(r['fmr_ci_persons'])}</td>"
                f"<td>{r['false_matches']:,} / {r['impostor_pairs']:,}</td>"
                f"<td>{_fmt(r['fmr_ratio'], '.2f')}</td><td>{_ci(r['fmr_ratio_ci'])}</td>"
                f"<td>{_fmt(r['fnmr'])}</td><td>{_ci(r['fnmr_ci_persons'])}</td><td>{r['false_non_matches']:,} / {r['genuine_pairs']:,}</td>"
                f"<td>{_fmt(r['eer'] and 100 * r['eer'], '.2f')}{' %' if r['eer'] is not None else ''}</td></tr>"
            )
        c = g["cross_group"]
        parts.append(
            f"<tr><td class='l'>across groups</td><td></td><td></td><td>{_fmt(c['fmr'])}</td><td>{_ci(c['fmr_ci'])}</td>"
            f"<td></td><td>{c['false_matches']:,} / {c['impostor_pairs']:,}</td><td colspan='6'></td></tr></table>"
        )
        parts.append(
            "<p class='note'>A group's FMR counts different-person pairs within the group (as NIST does); the "
            "ratio is to the group with the lowest measurable rate. Read a ratio only with its interval over "
            f"persons ({metrics.BOOTSTRAP_REPLICATES} bootstrap draws): an interval that contains 1 means the data "
            "cannot tell the groups apart. The 'pairs' interval treats every pair as independent and is too narrow "
            "when a few people make most of the errors.</p>"
        )
        parts.append(_img(pictures, "groups.png", "Per-group FMR and FNMR", "Per-group FMR and FNMR at the threshold with 95 % intervals over persons (bootstrap; log scale).", wide=True))

    cal = report["calibration"]
    parts.append("<h2>Calibration on this data</h2>")
    parts.append(f"<p>{_e(cal['source'])}. {('Written to ' + _e(cal['path'])) if cal['path'] else 'Not written (use --calibrate).'}</p>")
    parts.append("<table><tr><th>target FMR</th><th>threshold</th><th>FMR</th><th>FNMR</th></tr>")
    for r in cal["summary"]:
        parts.append(f"<tr><td>{r['target_fmr']:g}</td><td>{r['threshold']:.1f}</td><td>{r['fmr']:.2e}</td><td>{r['fnmr']:.3f}</td></tr>")
    parts.append("</table>")

    applied = report["applied"]
    if applied:
        parts.append("<h2>Threshold applied to a collection</h2>")
        parts.append(
            f"<p>Collection <strong>{_e(applied['collection'])}</strong> ({applied['collection_faces']:,} faces): threshold "
            f"{applied['threshold']:.1f} for a 1:1 FMR of {applied['target_fmr']:g} "
            f"({_e(applied['basis'])}), set by "
            f"{_e(applied['actor'])} and written to the audit log.</p>"
        )
        note = applied["one_to_n"]
        parts.append(f"<p>{_e(note['text'])}</p><table><tr><th>faces N</th><th>chance of a false candidate (FPIR)</th><th>default threshold for N</th></tr>")
        for r in note["rows"]:
            parts.append(f"<tr><td>{r['faces']:,}</td><td>{r['fpir']:.2g}</td><td>{_fmt(r['default_threshold'], '.1f')}</td></tr>")
        parts.append("</table>")

    parts.append("<h2>Notes</h2>")
    parts += [f"<p class='note'>{_e(n)}</p>" for n in report["notes"]]
    timing = report["timing"]
    parts.append(
        f"<p class='note'>Embedding took {_fmt(timing['embedding_seconds'], '.1f')} s, the figures "
        f"{_fmt(timing['metrics_seconds'], '.1f')} s. Every number is in report.json (schema: report.schema.json).</p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


# ---------------------------------------------------------------- schema and a small validator


def _n(nullable: bool = False, minimum: float | None = None, maximum: float | None = None) -> dict[str, Any]:
    s: dict[str, Any] = {"type": ["number", "null"] if nullable else "number"}
    if minimum is not None:
        s["minimum"] = minimum
    if maximum is not None:
        s["maximum"] = maximum
    return s


_RATE = _n(True, 0, 1)
_COUNT = {"type": "integer", "minimum": 0}
_INTERVAL = {"type": ["array", "null"], "items": _n(True, 0), "minItems": 2, "maxItems": 2}
_STR = {"type": "string"}


def _obj(props: dict[str, Any], nullable: bool = False) -> dict[str, Any]:
    return {
        "type": ["object", "null"] if nullable else "object",
        "properties": props,
        "required": sorted(props),
        "additionalProperties": False,
    }


SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Regard accuracy audit report",
    **_obj(
        {
            "schema_version": {"type": "integer", "enum": [SCHEMA_VERSION]},
            "generated_at": _STR,
            "regard_version": _STR,
            "models": {
                "type": "array",
                "items": _obj({"name": _STR, "package": _STR, "package_version": {"type": ["string", "null"]}, "sha256": _STR, "license": _STR}),
            },
            "data": _obj(
                {
                    "name": _STR,
                    "kind": {"type": "string", "enum": ["pairs", "folders"]},
                    "root": _STR,
                    "photos": _COUNT,
                    "persons": _COUNT,
                    "genuine_pairs_available": _COUNT,
                    "impostor_pairs_available": _COUNT,
                    "genuine_pairs": _COUNT,
                    "impostor_pairs": _COUNT,
                    "sampling_seed": {"type": ["integer", "null"]},
                }
            ),
            "threshold": _obj({"score": _n(False, 0, 100), "source": _STR, "shipped_table": _STR, "shipped_fmr": _RATE, "shipped_fnmr": _RATE}),
            "enrolment": _obj(
                {
                    "photos": _COUNT,
                    "no_face": _COUNT,
                    "unreadable": _COUNT,
                    "low_quality": _COUNT,
                    "no_face_rate": _RATE,
                    "low_quality_rate": _RATE,
                    "fte_rate": _RATE,
                    "no_face_examples": {"type": "array", "items": _STR},
                    "low_quality_examples": {"type": "array", "items": _STR},
                    "rule": _STR,
                }
            ),
            "verification": _obj(
                {
                    "genuine_pairs": _COUNT,
                    "impostor_pairs": _COUNT,
                    "genuine_pairs_without_face": _COUNT,
                    "impostor_pairs_without_face": _COUNT,
                    "auc": _RATE,
                    "eer": _RATE,
                    "eer_threshold": _n(),
                    "tar_at_fmr": {
                        "type": "array",
                        "items": _obj(
                            {
                                "target_fmr": _RATE,
                                "threshold": _n(True),
                                "tar": _RATE,
                                "fnmr": _RATE,
                                "fmr": _RATE,
                                "false_matches": _COUNT,
                                "impostor_pairs": _COUNT,
                                "allowed_false_matches": _COUNT,
                                "few_errors": {"type": "boolean"},
                            }
                        ),
                    },
                    "unmeasurable_fmr_targets": {"type": "array", "items": _RATE},
                    "at_threshold": _obj(
                        {
                            "threshold": _n(False, 0, 100),
                            "fmr": _RATE,
                            "fmr_ci": _INTERVAL,
                            "false_matches": _COUNT,
                            "impostor_pairs": _COUNT,
                            "fnmr": _RATE,
                            "fnmr_ci": _INTERVAL,
                            "false_non_matches": _COUNT,
                            "genuine_pairs": _COUNT,
                            "fnmr_with_fte": _RATE,
                        }
                    ),
                    "curve": _obj({"scores": {"type": "array", "items": _n(False, 0, 100)}, "fmr": {"type": "array", "items": _RATE}, "fnmr": {"type": "array", "items": _RATE}}),
                }
            ),
            "identification": _obj(
                {
                    "split": _STR,
                    "gallery": _COUNT,
                    "mated_searches": _COUNT,
                    "non_mated_searches": _COUNT,
                    "rank1": _RATE,
                    "at_fpir": _obj(
                        {"target_fpir": _RATE, "threshold": _n(True), "fpir": _RATE, "fnir": _RATE, "non_mated_with_candidate": _COUNT, "few_errors": {"type": "boolean"}},
                        nullable=True,
                    ),
                    "at_default_search_threshold": _obj({"threshold": _n(False, 0, 100), "fpir": _RATE, "fnir": _RATE}),
                    "at_threshold": _obj({"threshold": _n(False, 0, 100), "fpir": _RATE, "fnir": _RATE}),
                },
                nullable=True,
            ),
            "groups": _obj(
                {
                    "source": {"type": ["string", "null"]},
                    "note": _STR,
                    "threshold": _n(False, 0, 100),
                    "rows": {
                        "type": "array",
                        "items": _obj(
                            {
                                "group": _STR,
                                "persons": _COUNT,
                                "photos": _COUNT,
                                "no_face": _COUNT,
                                "low_quality": _COUNT,
                                "genuine_pairs": _COUNT,
                                "impostor_pairs": _COUNT,
                                "fmr": _RATE,
                                "fmr_ci": _INTERVAL,
                                "fmr_ci_persons": _INTERVAL,
                                "false_matches": _COUNT,
                                "fnmr": _RATE,
                                "fnmr_ci": _INTERVAL,
                                "fnmr_ci_persons": _INTERVAL,
                                "false_non_matches": _COUNT,
                                "eer": _RATE,
                                "fmr_ratio": _n(True, 0),
                                "fmr_ratio_ci": _INTERVAL,
                                "fnmr_ratio": _n(True, 0),
                                "fnmr_ratio_ci": _INTERVAL,
                            }
                        ),
                    },
                    "best_fmr_group": {"type": ["string", "null"]},
                    "best_fnmr_group": {"type": ["string", "null"]},
                    "cross_group": _obj({"impostor_pairs": _COUNT, "false_matches": _COUNT, "fmr": _RATE, "fmr_ci": _INTERVAL}),
                    "ungrouped_persons": _COUNT,
                    "bootstrap": _obj({"replicates": _COUNT, "seed": {"type": "integer"}, "unit": _STR}),
                },
                nullable=True,
            ),
            "calibration": _obj(
                {
                    "source": _STR,
                    "genuine_pairs": _COUNT,
                    "impostor_pairs": _COUNT,
                    "summary": {"type": "array", "items": _obj({"target_fmr": _RATE, "threshold": _n(False, 0, 100), "fmr": _RATE, "fnmr": _RATE})},
                    "path": {"type": ["string", "null"]},
                }
            ),
            "applied": _obj(
                {
                    "collection": _STR,
                    "collection_faces": _COUNT,
                    "target_fmr": _RATE,
                    "threshold": _n(False, 0, 100),
                    "basis": {"type": "string", "enum": ["measured", "measured from few false matches", "extrapolated"]},
                    "actor": _STR,
                    "reason": _STR,
                    "one_to_n": _obj(
                        {
                            "threshold": _n(False, 0, 100),
                            "fmr": _RATE,
                            "text": _STR,
                            "rows": {"type": "array", "items": _obj({"faces": _COUNT, "fpir": _RATE, "default_threshold": _n(True, 0, 100)})},
                        }
                    ),
                },
                nullable=True,
            ),
            "findings": {"type": "array", "items": _STR},
            "warnings": {"type": "array", "items": _STR},
            "notes": {"type": "array", "items": _STR},
            "timing": _obj({"embedding_seconds": _n(True, 0), "metrics_seconds": _n(True, 0)}),
        }
    ),
}


_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return isinstance(value, _TYPES[kind])


def validate(instance: Any, schema: dict[str, Any], path: str = "$") -> list[str]:
    """Problems with `instance` against the subset of JSON Schema that SCHEMA uses (type, enum,
    minimum, maximum, properties, required, additionalProperties, items, minItems, maxItems)."""
    problems: list[str] = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is(instance, k) for k in kinds):
            return [f"{path}: {type(instance).__name__} is not {' or '.join(kinds)}"]
    if "enum" in schema and instance not in schema["enum"]:
        problems.append(f"{path}: {instance!r} is not one of {schema['enum']}")
    if isinstance(instance, (int, float)) and not isinstance(instance, bool):
        if "minimum" in schema and instance < schema["minimum"]:
            problems.append(f"{path}: {instance} < {schema['minimum']}")
        if "maximum" in schema and instance > schema["maximum"]:
            problems.append(f"{path}: {instance} > {schema['maximum']}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in instance:
                problems.append(f"{path}: missing {key!r}")
        for key, value in instance.items():
            if key in props:
                problems += validate(value, props[key], f"{path}.{key}")
            elif schema.get("additionalProperties", True) is False:
                problems.append(f"{path}: unexpected {key!r}")
    if isinstance(instance, list):
        if "minItems" in schema and len(instance) < schema["minItems"]:
            problems.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            problems.append(f"{path}: more than {schema['maxItems']} items")
        if "items" in schema:
            for k, item in enumerate(instance):
                problems += validate(item, schema["items"], f"{path}[{k}]")
    return problems
