"""Model cards for `regard models --card`: each model's source, checks and description, and for the
embedder the accuracy its shipped threshold table was measured at, so that what a threshold means is
printed next to the model it belongs to. docs/MODEL_CARD.md has the full story; `regard audit
--append-card` adds an audit's figures to a card file."""

from __future__ import annotations

import json
from typing import Any

from regard.match import DEFAULT_FMR, ThresholdTable, default_table, search_threshold

LIMITS = (
    "Measured on LFW (photos of public figures, mostly men and mostly light-skinned); error rates on "
    "other people and other photos differ. Measure them on your own photos with `regard audit`, per "
    "group if you supply groups (Regard never infers them), and calibrate with `--calibrate`."
)


def _calibration(table: ThresholdTable) -> dict[str, Any]:
    return {
        "source": table.source,
        "genuine_pairs": table.genuine_pairs,
        "impostor_pairs": table.impostor_pairs,
        "default_threshold": table.threshold_for(DEFAULT_FMR),
        "default_fmr": DEFAULT_FMR,
        "summary": table.summary(),
        "search_thresholds": {str(n): search_threshold(table, n) for n in (10, 100, 1_000, 10_000)},
    }


def model_cards(rows: list[dict[str, Any]], *, as_json: bool = False) -> str:
    """The cards of the models in `rows` (as `regard models` lists them), as text or JSON: the
    built-in embedder's with the table Regard ships, an operator's with its own calibration."""
    cards = []
    for row in rows:
        card = {k: v for k, v in row.items() if k != "calibration_table"}
        card["limits"] = LIMITS
        if row["name"] == "dlib-resnet":
            card["calibration"] = _calibration(default_table())
        elif row.get("calibration_table"):
            card["calibration"] = _calibration(ThresholdTable.from_dict(row["calibration_table"]))
        elif "calibrated" in row:
            card["calibration"] = None
        cards.append(card)
    if as_json:
        return json.dumps(cards, indent=2)
    out = []
    for card in cards:
        out += [
            f"Model card: {card['name']}",
            "=" * (12 + len(card["name"])),
            f"package:  {card['package']}",
            f"licence:  {card['license']}",
            f"sha256:   {card['sha256']}  [{card['status']}]",
            f"input:    {card['input_size']}",
            "",
            card["card"],
            "",
        ]
        cal = card.get("calibration")
        if cal:
            out += [
                f"Thresholds: measured on {cal['source']}",
                f"({cal['genuine_pairs']:,} same-person and {cal['impostor_pairs']:,} different-person pairs).",
                f"Default 1:1 threshold {cal['default_threshold']:.1f} (FMR at most {cal['default_fmr']:g}).",
                f"  {'target FMR':>10} {'threshold':>9} {'FMR':>9} {'FNMR':>6}",
            ]
            out += [f"  {r['target_fmr']:>10.0e} {r['threshold']:>9.1f} {r['fmr']:>9.2e} {r['fnmr']:>6.3f}" for r in cal["summary"]]
            out.append(
                "1:N default thresholds (FPIR <= 1 %): "
                + ", ".join(f"{t:.1f} at {int(n):,} faces" for n, t in cal["search_thresholds"].items())
            )
            out.append("")
        elif "calibrated" in card:
            out += ["Thresholds: none. This model is not calibrated, so it may not compare or search;",
                    f"measure them: regard audit PHOTOS --out DIR --model {card['name']} --calibrate", ""]  # fmt: skip
        out += [f"Limits: {card['limits']}", ""]
    return "\n".join(out).rstrip() + "\n"
