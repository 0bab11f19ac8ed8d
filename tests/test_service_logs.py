"""Every answer carries a request id (X-Request-Id), and `regard serve --log-format json` writes one
JSON object per line, with a line per request that names that id."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.service_harness import running_service


def test_json_logs_have_a_line_per_request_with_the_id_the_response_gave(tmp_path: Path) -> None:
    with running_service(tmp_path, "--log-format", "json") as service:
        mine = httpx.get(f"{service.url}/healthz", headers={"X-Request-Id": "ticket-4711.a"})
        assert mine.headers["x-request-id"] == "ticket-4711.a"  # a sane client id is kept
        odd = httpx.get(f"{service.url}/healthz", headers={"X-Request-Id": "no spaces or {braces}"})
        assert odd.headers["x-request-id"] != "no spaces or {braces}" and len(odd.headers["x-request-id"]) == 32
        refused = httpx.get(f"{service.url}/v1/collections")  # no key: 401, with an id too
        assert refused.status_code == 401 and refused.headers["x-request-id"]
        ids = {mine.headers["x-request-id"]: 200, odd.headers["x-request-id"]: 200, refused.headers["x-request-id"]: 401}
        log = next(tmp_path.glob("server-*.log"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
            requests = {r["request"]["id"]: r["request"] for r in lines if "request" in r}
            if ids.keys() <= requests.keys():
                break
            time.sleep(0.2)
        text = [line for line in log.read_text().splitlines() if line.strip()]
        assert all(line.startswith("{") for line in text), [line for line in text if not line.startswith("{")][:3]
        for request_id, status in ids.items():
            entry = requests[request_id]
            assert entry["status"] == status and entry["method"] == "GET" and entry["ms"] >= 0
        assert requests[refused.headers["x-request-id"]]["path"] == "/v1/collections"
        assert {r["level"] for r in lines} <= {"debug", "info", "warning", "error", "critical"}


def test_text_logs_still_give_every_answer_an_id(tmp_path: Path) -> None:
    with running_service(tmp_path) as service:
        response = httpx.get(f"{service.url}/healthz")
        assert len(response.headers["x-request-id"]) == 32


def _session_cookie(service, headers: dict[str, str]) -> str:
    """The console's sign-in answer's Set-Cookie for its session, signing in with `headers` sent."""
    import re

    key_id, secret = service.key("admin")
    form = httpx.get(f"{service.url}/console/sign-in", headers=headers)
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf, form.text[:300]
    cookies = "; ".join(f"{k}={v}" for k, v in form.cookies.items())
    answer = httpx.post(
        f"{service.url}/console/sign-in", headers={**headers, "Cookie": cookies},
        data={"key": f"{key_id}.{secret}", "csrf": csrf.group(1), "next": "/console"},
    )  # fmt: skip
    assert answer.status_code == 303, answer.text[:300]
    return " | ".join(v for k, v in answer.headers.multi_items() if k.lower() == "set-cookie")


def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    with running_service(tmp_path / "open") as service:  # no --trusted-proxy: a client cannot claim HTTPS
        assert "secure" not in _session_cookie(service, https).lower()
    with running_service(tmp_path / "proxied", "--trusted-proxy", "127.0.0.1") as service:
        assert "secure" in _session_cookie(service, https).lower()
        assert "secure" not in _session_cookie(service, {}).lower()  # plain HTTP through the proxy stays plain
