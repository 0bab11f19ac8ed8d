"""The accuracy audit's report as one self-contained HTML page (`report.html`): the report's figures
and findings in tables, the plots embedded as PNG data, no scripts and no external files; printable.

    page = render_html(audit.report, audit.pictures)
"""

from __future__ import annotations

import base64
import html
from typing import Any

from regard.accuracy import metrics
from regard.accuracy.findings import audited_model, one_in

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
        (
            f'<p class="sub">Regard {_e(report["regard_version"])} · {_e(report["generated_at"])} · '
            f"threshold {t['score']:.1f} ({_e(t['source'])})</p>"
        ),
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
    operator = audited_model(report)
    if operator is None:
        table_row = ("shipped threshold table", t["shipped_table"])
    else:
        table_row = (f"model {operator['name']}'s threshold table", t["shipped_table"] or "not calibrated (no thresholds of its own yet)")
    for label, value in (
        ("data", d["name"]),
        ("layout", "LFW-style pairs file" if d["kind"] == "pairs" else "person folders"),
        ("folder", d["root"]),
        ("photos / persons", f"{d['photos']:,} / {d['persons']:,}"),
        ("same-person pairs (used / available)", f"{d['genuine_pairs']:,} / {d['genuine_pairs_available']:,}"),
        ("different-person pairs (used / available)", f"{d['impostor_pairs']:,} / {d['impostor_pairs_available']:,}"),
        ("sampling", sampling),
        table_row,
    ):
        parts.append(f"<tr><th class='l'>{_e(label)}</th><td class='l'>{_e(value)}</td></tr>")
    for m in report["models"]:
        extra = ""
        if "id" in m:  # an operator's recognition model
            extra = (
                f" · {_e(m['id'])} · {_e(m['family'])} family, {m['width']}-d vectors"
                f"{' · source ' + _e(m['source']) if m['source'] else ''} · {'calibrated' if m['calibrated'] else 'not calibrated'}"
            )
        parts.append(
            f"<tr><th class='l'>model {_e(m['name'])}</th><td class='l'>{_e(m['package'])} "
            f"{_e(m['package_version'] or '')} · sha256 {_e(m['sha256'][:16])}… · {_e(m['license'])}{extra}</td></tr>"
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
        whose = "Regard's" if operator is None else f"model {operator['name']}'s"
        for key, label in (("at_default_search_threshold", f"{whose} default search threshold for this gallery"), ("at_threshold", "the audit's threshold")):
            x = ident[key]
            if x is None:  # the model has no calibration, or its calibration cannot model this gallery
                why = "not calibrated" if t["shipped_table"] is None else "none (see the warnings)"
                parts.append(f"<tr><th class='l'>at {_e(label)}</th><td>{why}</td></tr>")
                continue
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
    if cal.get("stored_with"):
        parts.append(f"<p>Stored with model {_e(cal['stored_with'])} in the model registry: it may now compare and search.</p>")
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
