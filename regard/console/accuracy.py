"""The console's accuracy section: the reports `regard audit` wrote, and the shipped model card.

Nothing is uploaded or computed here. `regard serve --reports DIR` (or $REGARD_REPORTS_DIR) names a
folder that holds one folder per report, each as regard/accuracy/report.py's `write` leaves it
(report.json, report.schema.json, report.html and the plots' PNGs). The list shows each report's
date and headline figures from its report.json; a report's page shows its figures and plots, and
links to the report's own self-contained report.html.

The report's files are served from /console/accuracy/reports/<name>/<file>, and only those: <name>
must be a folder listed in DIR and <file> a plain file listed in it, with a known kind (.html, .png,
.json); symbolic links and hidden names are never listed, so nothing outside DIR can be reached.
report.html carries its own <style>: it is served with a Content-Security-Policy of its own that
allows exactly that style (by its sha256) and no script at all.

Any signed-in key may read this section: reports and the model card hold error rates, not faces.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from regard.console.common import signed_in, state
from regard.console.render import HEADERS, page
from regard.console.session import Session
from regard.errors import NotFoundError

router = APIRouter(prefix="/console", include_in_schema=False)

KINDS = {".html": "text/html; charset=utf-8", ".png": "image/png", ".json": "application/json"}
"""The files of a report that are served, by their suffix."""

MAX_JSON_BYTES = 32 * 1024 * 1024
"""A report.json larger than this is not read for the list (a report of LFW is about 1 MB)."""

FIGURES = ("roc.png", "det.png", "scores.png", "groups.png")
"""The plots `regard audit` draws, in the order the report shows them."""

_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class Report:
    """One report folder: its name (the folder's), its files, and what its report.json says."""

    name: str
    files: tuple[str, ...]
    data: dict[str, Any] | None  # report.json, None if it is missing or unreadable
    problem: str | None  # why report.json could not be read
    modified: float

    @property
    def generated(self) -> datetime | None:
        text = (self.data or {}).get("generated_at")
        try:
            moment = datetime.fromisoformat(str(text)) if text else None
        except ValueError:
            return None
        if moment is not None and moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment

    @property
    def sort_key(self) -> float:
        generated = self.generated
        return generated.timestamp() if generated is not None else self.modified


def _listed(folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return [e for e in entries if not e.name.startswith(".") and not e.is_symlink()]
    except OSError:
        return []


def _read_json(path: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as exc:
        return None, exc.strerror or str(exc)
    if len(raw) > MAX_JSON_BYTES:
        return None, f"larger than {MAX_JSON_BYTES // (1024 * 1024)} MB"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, str(exc)
    if not isinstance(data, dict):
        return None, "not a JSON object"
    return data, None


def reports(root: Path) -> list[Report]:
    """The report folders in `root`, newest first: folders (not links) holding report.json or
    report.html."""
    found = []
    for entry in _listed(str(root)):
        if not entry.is_dir(follow_symlinks=False):
            continue
        files = sorted(e.name for e in _listed(entry.path) if e.is_file(follow_symlinks=False))
        if "report.json" not in files and "report.html" not in files:
            continue
        data, problem = _read_json(os.path.join(entry.path, "report.json")) if "report.json" in files else (None, None)
        found.append(Report(entry.name, tuple(files), data, problem, entry.stat(follow_symlinks=False).st_mtime))
    return sorted(found, key=lambda r: r.sort_key, reverse=True)


def _root(request: Request) -> Path | None:
    folder = state(request).config.reports_dir
    return Path(folder) if folder is not None else None


def _report(request: Request, name: str) -> tuple[Path, Report]:
    """The report folder `name` of the configured folder, if it is listed there (else 404)."""
    root = _root(request)
    if root is not None:
        for report in reports(root):
            if report.name == name:
                return root, report
    raise NotFoundError(f"no report {name!r}")


# ---------------------------------------------------------------- what the pages show


def _get(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def headline(report: Report) -> dict[str, Any]:
    """The figures the list shows for a report (None where report.json lacks one)."""
    data = report.data or {}
    at = _get(data, "verification", "at_threshold") or {}
    groups = _get(data, "groups", "rows")
    return {
        "data": _get(data, "data", "name"),
        "photos": _get(data, "data", "photos"),
        "persons": _get(data, "data", "persons"),
        "threshold": _number(_get(data, "threshold", "score")),
        "fmr": _number(_get(at, "fmr")),
        "fnmr": _number(_get(at, "fnmr")),
        "eer": _number(_get(data, "verification", "eer")),
        "groups": len(groups) if isinstance(groups, list) else None,
        "warnings": len(data.get("warnings") or []) if isinstance(data.get("warnings"), list) else 0,
    }


def when(moment: datetime | None) -> str:
    if moment is None:
        return "–"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def fmt(value: Any, spec: str = ".3g") -> str:
    """A figure for the page; '–' where there is none."""
    number = _number(value)
    return "–" if number is None else format(number, spec)


def percent(value: Any, digits: int = 2) -> str:
    number = _number(value)
    return "–" if number is None else f"{100 * number:.{digits}f} %"


def one_in(value: Any) -> str | None:
    """'1,230' for a rate of 1/1230 (the page words it as '1 in ...'); None for no rate or 0."""
    number = _number(value)
    if number is None or number <= 0:
        return None
    n = 1 / number
    return f"{n:,.0f}" if n >= 10 else f"{n:.1f}"


def _helpers() -> dict[str, Any]:
    return {"fmt": fmt, "percent": percent, "one_in": one_in, "when": when}


# ---------------------------------------------------------------- pages


@router.get("/accuracy", response_class=HTMLResponse)
def accuracy_page(request: Request, session: Session = Depends(signed_in)) -> Response:
    root = _root(request)
    found = reports(root) if root is not None else []
    return page(
        request, "accuracy_list.html", session=session, configured=root is not None,
        exists=root is not None and root.is_dir(), folder=str(root) if root is not None else "",
        reports=[(r, headline(r)) for r in found], **_helpers(),
    )  # fmt: skip


@router.get("/accuracy/model-card", response_class=HTMLResponse)
def model_card_page(request: Request, session: Session = Depends(signed_in)) -> Response:
    from regard.models.card import model_cards
    from regard.models.registry import model_status

    rows = model_status()  # as `regard models --card` lists them
    cards = json.loads(model_cards(rows, as_json=True))
    return page(request, "accuracy_card.html", session=session, cards=cards, **_helpers())


@router.get("/accuracy/reports/{name}", response_class=HTMLResponse)
def report_page(request: Request, name: str, session: Session = Depends(signed_in)) -> Response:
    _, report = _report(request, name)
    data = report.data or {}
    figures = [f for f in FIGURES if f in report.files]
    return page(
        request, "accuracy_report.html", session=session, report=report, data=data, top=headline(report),
        at=_get(data, "verification", "at_threshold") or {}, rows=_get(data, "verification", "tar_at_fmr") or [],
        identification=data.get("identification") if isinstance(data.get("identification"), dict) else None,
        group_rows=_get(data, "groups", "rows") or [], figures=figures, get=_get, **_helpers(),
    )  # fmt: skip


def report_csp(html: str) -> str:
    """The policy report.html is served with: its own inline styles (by hash), images from this
    server or data:, and nothing else (no script, no frame, no form)."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii") + "'"
        for style in _STYLE.findall(html)
    ]
    styles = " ".join(dict.fromkeys(hashes)) or "'none'"
    return (
        f"default-src 'none'; img-src 'self' data:; style-src {styles}; script-src 'none'; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )


@router.get("/accuracy/reports/{name}/{file}")
def report_file(request: Request, name: str, file: str, session: Session = Depends(signed_in)) -> Response:
    root, report = _report(request, name)
    kind = KINDS.get(Path(file).suffix.lower())
    if file not in report.files or kind is None:
        raise NotFoundError(f"no file {file!r} in the report {name!r}")
    try:  # the names were listed as plain files, not links; refuse one that became a link since
        fd = os.open(root / name / file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            body = f.read()
    except OSError:
        raise NotFoundError(f"no file {file!r} in the report {name!r}") from None
    headers = dict(HEADERS)
    if kind.startswith("text/html"):
        headers["Content-Security-Policy"] = report_csp(body.decode("utf-8", errors="replace"))
    return Response(body, media_type=kind, headers=headers)
