"""The console's audit section over HTTP (a real `regard serve`): the log newest first, its filters
and pages, verifying the chain (the head hash the store computes), the JSON Lines export, and the
scope: a collection-scoped admin key sees only its collections' entries; other keys are refused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from regard.store import ConsentBasis, open_store
from regard.store.core import Store
from tests.service_harness import Service, running_service
from tests.test_console import _csrf, sign_in

EXTRA_PERSONS = 55
"""Persons added to the north collection, so that its log takes two pages (50 a page)."""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("console-audit")) as svc:
        store = open_store(svc.store_url)
        try:
            store.create_collection("north", purpose="Volunteers of the North office", actor="alice")
            store.create_collection("south", purpose="Staff of the South office", actor="bob")
            store.add_person("north", "nadia", actor="alice")
            store.record_consent("north", "nadia", basis=ConsentBasis.CONSENT, actor="alice", reference="form-12")
            store.add_person("south", "sam", actor="bob")
            store.record_consent("south", "sam", basis=ConsentBasis.CONSENT, actor="bob", reference="form-99")
            store.revoke_consent("south", "sam", actor="bob", reason="asked to be removed")
            for n in range(EXTRA_PERSONS):
                store.add_person("north", f"p{n:02d}", actor="carol")
        finally:
            store.close()
        yield svc


@pytest.fixture
def store(service: Service) -> Iterator[Store]:
    opened = open_store(service.store_url)
    yield opened
    opened.close()


def _seqs(page: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr id="audit-entry-(\d+)"', page)]


def _all_pages(client: httpx.Client, **params: str) -> list[int]:
    """Every seq the log shows for these filters, following its "older entries" links."""
    seqs: list[int] = []
    response = client.get("/console/audit", params=params)
    while True:
        assert response.status_code == 200, response.text[-1500:]
        seqs += _seqs(response.text)
        found = re.search(r'<a href="([^"]+)" id="audit-next"', response.text)
        if not found:
            return seqs
        response = client.get(found.group(1).replace("&amp;", "&"))


def _seqs_of(store: Store, **filters: object) -> list[int]:
    return sorted((e.seq for e in store.audit_entries(**filters)), reverse=True)  # type: ignore[arg-type]


def test_the_log_lists_entries_newest_first_in_pages_each_readable(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("admin"))
    first = client.get("/console/audit")
    assert first.status_code == 200
    shown = _seqs(first.text)
    newest = store.audit_entries()[-1].seq
    assert len(shown) == 50 and shown == list(range(newest, newest - 50, -1))
    assert 'id="audit-next"' in first.text and 'id="audit-previous"' not in first.text
    everything = _all_pages(client)
    assert everything == _seqs_of(store)  # every entry once, newest first
    # An entry in words (who, what, to whom, why) and in full.
    revoke = next(e for e in store.audit_entries(collection="south") if e.details.get("reason"))
    page = client.get("/console/audit", params={"collection": "south"}).text
    row = page.split(f'<tr id="audit-entry-{revoke.seq}"', 1)[1].split("</tr>", 1)[0]
    assert "bob" in row and "sam" in row and "asked to be removed" in row and "<details>" in row
    assert f"&#34;hash&#34;: &#34;{revoke.hash}&#34;" in row


def test_the_filters_select_the_entries(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("admin"))
    assert _all_pages(client, collection="south") == _seqs_of(store, collection="south")
    assert _all_pages(client, action="person_add") == _seqs_of(store, action="person_add")
    assert _all_pages(client, actor="bob") == _seqs_of(store, actor="bob")
    assert _all_pages(client, actor="bob", action="consent_record") == _seqs_of(store, actor="bob", action="consent_record")
    creates = [e.seq for e in store.audit_entries(action="collection_create") if "south" in (e.purpose or "").lower()]
    assert _all_pages(client, purpose="SOUTH office") == sorted(creates, reverse=True) and creates
    today = datetime.now(UTC).date()
    assert _all_pages(client, since=today.isoformat(), until=today.isoformat()) == _seqs_of(store)
    assert _all_pages(client, since=(today + timedelta(days=1)).isoformat()) == []
    assert _all_pages(client, until=(today - timedelta(days=1)).isoformat()) == []
    bad = client.get("/console/audit", params={"since": "yesterday", "action": "nonsense"})
    assert bad.status_code == 400 and 'id="audit-problems"' in bad.text and _seqs(bad.text) == []


def test_verifying_the_chain_shows_ok_and_the_stores_head(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("admin"))
    csrf = _csrf(client.get("/console/audit").text)
    assert client.post("/console/audit/verify", data={"csrf": "forged"}).status_code == 403
    response = client.post("/console/audit/verify", data={"csrf": csrf})
    assert response.status_code == 200
    report = store.verify_audit()
    assert report.ok
    assert 'id="audit-verify-result" data-ok="true"' in response.text
    assert f'<code id="audit-head-hash" class="audit-hash">{report.head_hash}</code>' in response.text
    assert f'<code id="audit-head-seq">{report.head_seq}</code>' in response.text
    assert f"Entries checked: {report.checked}." in response.text


def test_the_export_is_json_lines_of_the_filtered_entries(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("admin"))
    page = client.get("/console/audit", params={"collection": "north", "actor": "alice"}).text
    link = re.search(r'<a href="([^"]+)" id="audit-export"', page)
    assert link and "collection=north" in link.group(1) and "actor=alice" in link.group(1)
    response = client.get(link.group(1).replace("&amp;", "&"))
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment;") and ".jsonl" in response.headers["content-disposition"]
    lines = response.text.splitlines()
    assert [json.loads(line) for line in lines] == [e.as_dict() for e in store.audit_entries(collection="north", actor="alice")]
    assert len(lines) == 3  # the collection, nadia and her consent
    everything = client.get("/console/audit/export")
    assert len(everything.text.splitlines()) == len(store.audit_entries())


def test_a_scoped_admin_key_sees_only_its_collections_entries(service: Service, store: Store) -> None:
    client = sign_in(service, service.key("admin", collections=["south"]))
    page = client.get("/console/audit")
    assert page.status_code == 200 and 'id="audit-scoped"' in page.text
    south = _seqs_of(store, collection="south")
    assert _all_pages(client) == south  # not north's, nor the store-wide key entries
    assert "nadia" not in page.text and "key_create" not in page.text.split('id="audit-entries"', 1)[1]
    assert client.get("/console/audit", params={"collection": "north"}).status_code == 403
    exported = client.get("/console/audit/export")
    assert exported.status_code == 200
    assert sorted((json.loads(line)["seq"] for line in exported.text.splitlines()), reverse=True) == south
    assert client.get("/console/audit/export", params={"collection": "north"}).status_code == 403
    # The chain: whether it holds and its head, not which entries failed.
    verified = client.post("/console/audit/verify", data={"csrf": _csrf(page.text)})
    assert verified.status_code == 200 and 'data-ok="true"' in verified.text
    assert store.verify_audit().head_hash in verified.text and "Entries checked" not in verified.text


def test_a_key_that_is_not_admin_is_refused(service: Service) -> None:
    client = sign_in(service, service.key("search", "enroll"))
    assert client.get("/console/audit").status_code == 403
    assert client.get("/console/audit/export").status_code == 403
    csrf = _csrf(client.get("/console").text)
    assert client.post("/console/audit/verify", data={"csrf": csrf}).status_code == 403
    assert 'href="/console/audit"' not in client.get("/console").text
