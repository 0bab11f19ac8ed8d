"""The console's audit section: the audit log for the people who review it (who did what, to whom,
and why), its chain verified, and its entries exported as JSON Lines.

Role `admin`. A key scoped to collections sees only the entries of those collections, exactly as
the native API's GET /v1/audit scopes them: store-wide entries (keys, sweeps) only an unscoped
admin key sees, and filtering on a collection outside the scope is refused (403). Verifying the
chain tells a scoped key whether the whole chain holds and its head, never which entries failed
(they may be other collections'), as GET /v1/audit/verify does. Reading the log is not audited
(neither is it through the API).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from regard.auditlog import AuditAction, AuditEntry
from regard.console.common import form, signed_in, state
from regard.console.i18n import Words
from regard.console.render import HEADERS, page, words_for
from regard.console.session import Session
from regard.service.auth import Caller
from regard.store.base import Role
from regard.store.core import Store

router = APIRouter(prefix="/console", include_in_schema=False)

PER_PAGE = 50
"""Entries on one page of the log."""


@dataclass(frozen=True)
class Filters:
    """What the log is filtered by (the page's GET form; every field optional)."""

    collection: str | None = None
    action: str | None = None
    actor: str | None = None
    purpose: str | None = None  # contained in the entry's purpose, whatever the case
    since: date | None = None  # from this day (00:00 UTC) on
    until: date | None = None  # up to this day included

    def query(self, **more: Any) -> str:
        """The filters as a query string (for the export link and the pages)."""
        pairs = {
            "collection": self.collection,
            "action": self.action,
            "actor": self.actor,
            "purpose": self.purpose,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            **more,
        }
        return urlencode({k: v for k, v in pairs.items() if v not in (None, "")})

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.collection, self.action, self.actor, self.purpose, self.since, self.until))


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


def parse_filters(request: Request, words: Words) -> tuple[Filters, list[str]]:
    """The filters of the request's query string, and what is wrong with them (in words)."""
    problems: list[str] = []
    days: dict[str, date | None] = {}
    for name in ("since", "until"):
        text = _text(request, name)
        days[name] = None
        if text is not None:
            try:
                days[name] = date.fromisoformat(text)
            except ValueError:
                problems.append(words("audit.bad_date", value=text))
    action = _text(request, "action")
    if action is not None and action not in {a.value for a in AuditAction}:
        problems.append(words("audit.bad_action", value=action))
        action = None
    if days["since"] and days["until"] and days["until"] < days["since"]:
        problems.append(words("audit.bad_range"))
    filters = Filters(
        collection=_text(request, "collection"),
        action=action,
        actor=_text(request, "actor"),
        purpose=_text(request, "purpose"),
        since=days["since"],
        until=days["until"],
    )
    return filters, problems


def _start_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def matching(store: Store, caller: Caller, filters: Filters) -> list[AuditEntry]:
    """The entries the caller may see that match the filters, newest first (as GET /v1/audit
    scopes them: a scoped key, the entries of its collections only)."""
    caller.require(Role.ADMIN, filters.collection)
    asked: dict[str, Any] = {
        "action": filters.action,
        "actor": filters.actor,
        "since": _start_of(filters.since) if filters.since else None,
        "until": _start_of(filters.until) + timedelta(days=1) if filters.until else None,
    }
    scope = caller.key.collections
    if filters.collection is not None or scope is None:
        entries = store.audit_entries(collection=filters.collection, **asked)
    else:
        entries = [e for c in sorted(set(scope)) for e in store.audit_entries(collection=c, **asked)]
    if filters.purpose:
        wanted = filters.purpose.casefold()
        entries = [e for e in entries if e.purpose and wanted in e.purpose.casefold()]
    return sorted(entries, key=lambda e: e.seq, reverse=True)


# ---------------------------------------------------------------- entries in words


def _short(value: Any) -> str:
    """An image id for reading: sha256:0123456789ab… (the full one is in the entry's JSON)."""
    text = str(value)
    if text.startswith("sha256:") and len(text) > 19:
        return text[:19] + "…"
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"
    return text


def _listed(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_short(v) for v in value) if value else "—"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    return _short(value)


_FACTS = [
    ("person_id", "audit.d.person"),
    ("face_id", "audit.d.face"),
    ("face_ids", "audit.d.faces"),
    ("external_image_ids", "audit.d.images"),
    ("reason", "audit.d.reason"),
    ("faces_erased", "audit.d.faces_erased"),
    ("basis", "audit.d.basis"),
    ("reference", "audit.d.reference"),
    ("expires_at", "audit.d.expires"),
    ("retention_days", "audit.d.retention"),
    ("min_quality", "audit.d.min_quality"),
    ("model", "audit.d.model"),
    ("previous_threshold", "audit.d.previous_threshold"),
    ("threshold", "audit.d.threshold"),
    ("key_id", "audit.d.key"),
    ("name", "audit.d.key_name"),
    ("roles", "audit.d.roles"),
    ("collections", "audit.d.scope"),
    ("default_purpose", "audit.d.default_purpose"),
    ("gallery_size", "audit.d.gallery_size"),
]
"""The details shown in words, in this order, when an entry has them (the rest is in its JSON)."""


def _box(box: Any) -> str:
    if not isinstance(box, dict):
        return ""
    try:
        return f"{round(box['left'])}, {round(box['top'])}, {round(box['width'])} × {round(box['height'])}"
    except (KeyError, TypeError, ValueError):
        return ""


def facts(entry: AuditEntry, words: Words) -> list[tuple[str, str]]:
    """What an entry says, as (label, value) lines: whom and what it concerned, why, which faces."""
    details = entry.details if isinstance(entry.details, dict) else {}
    out: list[tuple[str, str]] = []
    if entry.action is AuditAction.SEARCH:
        request = details.get("request") if isinstance(details.get("request"), dict) else {}
        if request.get("operation"):
            out.append((words("audit.d.operation"), str(request["operation"])))
        if request.get("photo_sha256"):
            out.append((words("audit.d.photo"), _short(request["photo_sha256"])))
        if "faces_found" in request:
            out.append((words("audit.d.faces_found"), str(request["faces_found"])))
    for name, label in _FACTS:
        value = details.get(name)
        if value is None:
            continue
        out.append((words(label), _listed(value)))
    if entry.action is AuditAction.SEARCH:
        queries = details.get("queries") if isinstance(details.get("queries"), list) else []
        results = details.get("results") if isinstance(details.get("results"), list) else []
        for number, query in enumerate(queries, 1):
            query = query if isinstance(query, dict) else {}
            found = results[number - 1] if number - 1 < len(results) and isinstance(results[number - 1], list) else []
            persons: list[str] = []
            for candidate in found:
                if not isinstance(candidate, dict):
                    continue
                who = candidate.get("person_id") or candidate.get("face_id")
                line = f"{who} ({candidate.get('score')})"
                if line not in persons:
                    persons.append(line)
            where = _box(query.get("box")) or (words("audit.d.enrolled_face", face=query["face_id"]) if query.get("face_id") else "")
            value = ", ".join(persons) if persons else words("audit.d.no_candidate")
            label = words("audit.d.searched_face", number=number)
            out.append((f"{label} ({where})" if where else label, value))
    if entry.action is AuditAction.SWEEP:
        for item in details.get("erased") or []:
            if isinstance(item, dict):
                whom = item.get("person_id") or item.get("collection") or ""
                out.append(
                    (words("audit.d.erased"), words("audit.d.erased_line", whom=whom, faces=item.get("faces_erased", 0), reason=item.get("reason", "")))
                )  # fmt: skip
    return out


def _when(entry: AuditEntry) -> str:
    """2024-05-01T12:00:00.000000Z as 2024-05-01 12:00:00 UTC."""
    text = entry.time
    return f"{text[:10]} {text[11:19]} UTC" if len(text) >= 19 else text


def _key_names(store: Store) -> dict[str, str]:
    return {f"key:{k.key_id}": k.name for k in store.list_api_keys()}


def _view(entry: AuditEntry, words: Words, names: dict[str, str]) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "time": _when(entry),
        "time_iso": entry.time,
        "actor": entry.actor,
        "actor_name": names.get(entry.actor),
        "action": entry.action.value,
        "action_label": words(f"audit.action.{entry.action.value}"),
        "collection": entry.collection,
        "purpose": entry.purpose,
        "facts": facts(entry, words),
        "json": json.dumps(entry.as_dict(), indent=2, ensure_ascii=False, sort_keys=True),
        "hash": entry.hash,
    }


def _collections_offered(store: Store, caller: Caller) -> list[str]:
    if caller.key.collections is not None:
        return sorted(set(caller.key.collections))
    return sorted(c.id for c in store.list_collections())


# ---------------------------------------------------------------- pages


def _log_page(request: Request, session: Session) -> Response:
    words = words_for(request)
    store = state(request).store
    filters, problems = parse_filters(request, words)
    session.caller.require(Role.ADMIN, filters.collection)
    try:
        number = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        number = 1
    entries = [] if problems else matching(store, session.caller, filters)
    pages = max(1, math.ceil(len(entries) / PER_PAGE))
    number = min(number, pages)
    shown = entries[(number - 1) * PER_PAGE : number * PER_PAGE]
    names = _key_names(store)
    return page(
        request,
        "audit_log.html",
        session=session,
        status=400 if problems else 200,
        filters=filters,
        problems=problems,
        actions=[(a.value, words(f"audit.action.{a.value}")) for a in AuditAction],
        collections=_collections_offered(store, session.caller),
        scoped=session.caller.key.collections is not None,
        entries=[_view(e, words, names) for e in shown],
        total=len(entries),
        page_number=number,
        pages=pages,
        first=(number - 1) * PER_PAGE + 1 if shown else 0,
        last=(number - 1) * PER_PAGE + len(shown),
        previous_link=f"/console/audit?{filters.query(page=number - 1)}" if number > 1 else None,
        next_link=f"/console/audit?{filters.query(page=number + 1)}" if number < pages else None,
        export_link=f"/console/audit/export?{filters.query()}".rstrip("?"),
    )


@router.get("/audit", response_class=HTMLResponse)
def audit_log(request: Request, session: Session = Depends(signed_in)) -> Response:
    session.caller.require(Role.ADMIN)
    return _log_page(request, session)


@router.post("/audit/verify", response_class=HTMLResponse)
async def audit_verify(request: Request, session: Session = Depends(signed_in)) -> Response:
    """Check the chain (reading it, changing nothing: the result is shown at once)."""
    await form(request, session)
    session.caller.require(Role.ADMIN)
    report = state(request).store.verify_audit()
    scoped = session.caller.key.collections is not None
    verified = {
        "ok": report.ok,
        "checked": None if scoped else report.checked,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash,
        "problems": None if scoped else list(report.problems),
    }
    return page(request, "audit_verify.html", session=session, verified=verified, scoped=scoped)


@router.get("/audit/export")
def audit_export(request: Request, session: Session = Depends(signed_in)) -> Response:
    """The filtered entries the key may see as JSON Lines (one entry a line, oldest first, each as
    GET /v1/audit gives it), to download."""
    session.caller.require(Role.ADMIN)
    words = words_for(request)
    filters, problems = parse_filters(request, words)
    if problems:
        return _log_page(request, session)
    entries = sorted(matching(state(request).store, session.caller, filters), key=lambda e: e.seq)
    body = "".join(json.dumps(e.as_dict(), ensure_ascii=False, sort_keys=True) + "\n" for e in entries)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    headers = {**HEADERS, "Content-Disposition": f'attachment; filename="regard-audit-{stamp}.jsonl"'}
    return Response(body.encode("utf-8"), media_type="application/x-ndjson", headers=headers)
