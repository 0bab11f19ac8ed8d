"""The JSON Schema of the accuracy audit's report (`report.schema.json`, written beside `report.json`)
and a small validator for the subset of JSON Schema it uses, which `report.write` runs before it
writes a report:

    problems = validate(audit.report, SCHEMA)    # [] when the report matches; else "$.path: why" lines

SCHEMA_VERSION is the report's `schema_version`. The validator is Regard's own because it runs
whenever a report is written, and the `jsonschema` package is not a dependency.

A report of an operator's model (`regard audit --model NAME`) has the same shape: its entry in
`models` carries id, family, width, source and calibrated as well (all of them or none), the
comparisons with a table it does not have are null (`threshold.shipped_*`,
`identification.at_default_search_threshold`), and `calibration.stored_with` names the model a
`--calibrate` run stored its table with.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA_VERSION = 1


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


def _obj(props: dict[str, Any], nullable: bool = False, optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with exactly the keys `props` (all required) and, where given, `optional` ones."""
    return {
        "type": ["object", "null"] if nullable else "object",
        "properties": {**props, **optional} if optional else props,
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
                "items": {
                    **_obj(
                        {"name": _STR, "package": _STR, "package_version": {"type": ["string", "null"]}, "sha256": _STR, "license": _STR},
                        # An operator's recognition model also says what it is (`regard.models.recognizer`).
                        optional={
                            "id": _STR,
                            "family": _STR,
                            "width": {"type": "integer", "minimum": 2, "maximum": 4096},
                            "source": _STR,
                            "calibrated": {"type": "boolean"},
                        },
                    ),
                    "dependentRequired": {"id": ["calibrated", "family", "source", "width"]},
                },
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
            # shipped_*: the model's own table (the built-in's ships with Regard); null: not calibrated.
            "threshold": _obj(
                {"score": _n(False, 0, 100), "source": _STR, "shipped_table": {"type": ["string", "null"]}, "shipped_fmr": _RATE, "shipped_fnmr": _RATE}
            ),
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
                    "at_default_search_threshold": _obj({"threshold": _n(False, 0, 100), "fpir": _RATE, "fnir": _RATE}, nullable=True),
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
                },
                # Only where --calibrate stored the table with an operator's model: that model's id.
                optional={"stored_with": _STR},
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
    minimum, maximum, properties, required, dependentRequired, additionalProperties, items,
    minItems, maxItems)."""
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
        for key, needed in schema.get("dependentRequired", {}).items():
            if key in instance:
                problems += [f"{path}: missing {other!r} (required with {key!r})" for other in needed if other not in instance]
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
