"""The accuracy audit in words: the findings at the top of the report, "1 in N" phrasing, the note on
what an applied 1:1 threshold means for 1:N searches (`regard audit --apply-to`), and the Markdown
section that `regard audit --append-card` adds to a model card. The findings read the figures that
`report.build` computed; the 1:N note reads a threshold table.
"""

from __future__ import annotations

from typing import Any

from regard.errors import RegardError
from regard.match import ThresholdTable, search_threshold


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


def audited_model(report: dict[str, Any]) -> dict[str, Any] | None:
    """The operator's model that embedded the audit's photos (its entry in the report's `models`,
    the one with an id); None where the built-in model did."""
    return next((m for m in report["models"] if "id" in m), None)


def _stored_sentence(report: dict[str, Any], name: str) -> str | None:
    """What `--calibrate` did for an operator's model, once the CLI has stored the table."""
    if not report["calibration"].get("stored_with"):
        return None
    rows = {r["target_fmr"]: r for r in report["calibration"]["summary"]}
    default = f", with a default 1:1 threshold of {rows[1e-3]['threshold']:.1f} (FMR 1e-3 on this data)" if 1e-3 in rows else ""
    return f"This audit's threshold table is now stored with model {name} (--calibrate): it may compare and search{default}."


def findings(report: dict[str, Any]) -> list[str]:
    """Plain-language sentences for the top of the report."""
    out = []
    v, t = report["verification"], report["threshold"]
    at = v["at_threshold"]
    model = audited_model(report)
    if model is not None:
        out.append(
            f"The faces were embedded by model {model['name']} ({model['id']}, {model['family']} family, "
            f"{model['width']}-d vectors), supplied by the operator under: {model['license']}."
        )
    out.append(
        f"At the threshold {t['score']:.1f}, "
        f"{_false_match_sentence(at['false_matches'], at['impostor_pairs'], at['fmr_ci'], 'in ' + report['data']['name'])}; "
        f"{at['false_non_matches']:,} of {at['genuine_pairs']:,} comparisons of the same person "
        f"({100 * at['fnmr']:.1f} %) are missed."
    )
    shipped = t["shipped_fmr"]
    table = "the shipped table" if model is None else f"model {model['name']}'s own table"
    stored = None if model is None else _stored_sentence(report, model["name"])
    if shipped is None:
        assert model is not None  # the built-in model's table ships with Regard
        if stored:
            out.append(f"Model {model['name']} had no calibration when audited. {stored}")
        else:
            out.append(
                f"Model {model['name']} is not calibrated: it has no thresholds of its own, so it may embed faces "
                f"(enrolment) but not compare or search; `regard audit PHOTOS --out DIR --model {model['name']} "
                "--calibrate` stores a table measured on labelled photos with it."
            )
        stored = None
    elif at["fmr_ci"] and shipped < at["fmr_ci"][0]:
        out.append(
            f"That false-match rate is higher than {table}'s {shipped:.2g} at this threshold: "
            "calibrate on this data (--calibrate) and set a stricter threshold (--apply-to)."
        )
    elif at["fmr_ci"] and shipped > at["fmr_ci"][1]:
        out.append(f"That false-match rate is lower than {table}'s {shipped:.2g} at this threshold.")
    else:
        out.append(f"{table[0].upper()}{table[1:]}'s false-match rate at this threshold ({shipped:.2g}) is within this measurement's interval.")
    if stored:
        out.append(stored)
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


# ---------------------------------------------------------------- the model card


def model_card_section(report: dict[str, Any]) -> str:
    """A Markdown section with the audit's headline figures, to append to a model card."""
    v, d = report["verification"], report["data"]
    m = audited_model(report)
    model_line = [] if m is None else [f"Model: {m['name']} ({m['id']}, {m['family']} family, {m['width']}-d vectors, supplied by the operator).", ""]
    lines = [
        f"## Audit: {d['name']} ({report['generated_at'][:10]})",
        "",
        (
            f"`regard audit` on {d['photos']:,} photos of {d['persons']:,} people: {v['genuine_pairs']:,} same-person "
            f"and {v['impostor_pairs']:,} different-person pairs (Regard {report['regard_version']})."
        ),
        "",
        *model_line,
        "| target FMR | threshold | FMR | TAR | false matches / pairs |",
        "|---|---|---|---|---|",
    ]
    for r in v["tar_at_fmr"]:
        few = " (few)" if r["few_errors"] else ""
        lines.append(f"| {r['target_fmr']:g} | {r['threshold']:.1f} | {r['fmr']:.2e} | {100 * r['tar']:.1f} % | {r['false_matches']} / {r['impostor_pairs']:,}{few} |")
    lines += ["", f"EER {100 * v['eer']:.2f} %, AUC {v['auc']:.5f}.", ""]
    lines += [f"- {f}" for f in report["findings"]]
    return "\n".join(lines) + "\n"
