"""The console's accuracy section over HTTP (a real `regard serve --reports DIR`): a real report,
built and written by regard.accuracy.report from LFW photos of five people, is listed with its
date and figures; its page and plots load, and its report.html is served under a policy that allows
its own style and no script; nothing outside the listed report files can be reached ('..', unlisted
names, symbolic links); without --reports the page says none is configured; the model card shows
the shipped calibration."""

from __future__ import annotations

import http.client
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regard.accuracy import dataset as ds
from regard.accuracy.report import build, write
from regard.match import DEFAULT_FMR, default_table
from tests.conftest import FIXTURES
from tests.service_harness import Service, running_service
from tests.test_console import sign_in

PEOPLE = ("Ann_Veneman", "Angela_Bassett", "Anders_Fogh_Rasmussen", "Antony_Leung", "Akhmed_Zakayev")
"""Five LFW people with 3 to 6 photos each (tests/fixtures/lfw)."""

NAME = "lfw-five"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("console-accuracy-reports")
    photos = tmp / "photos"
    for person in PEOPLE:
        shutil.copytree(FIXTURES / "lfw" / person, photos / person)
    dataset = ds.load(photos, name="five LFW people")
    audit = build(dataset, ds.embed_photos(dataset, progress=False))
    reports = tmp / "reports"
    write(audit, reports / NAME)
    (reports / "not-a-report").mkdir()  # no report.json nor report.html: not listed
    (reports / "not-a-report" / "notes.txt").write_text("nothing")
    (reports / NAME / "secret.txt").write_text("not a report file")
    (tmp / "outside.png").write_bytes(b"\x89PNG outside the reports folder")
    (reports / NAME / "linked.png").symlink_to(tmp / "outside.png")
    (reports / "linked-report").symlink_to(reports / NAME, target_is_directory=True)
    return reports


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Iterator[Service]:
    with running_service(tmp_path_factory.mktemp("console-accuracy"), "--reports", str(folder)) as svc:
        yield svc


@pytest.fixture(scope="module")
def client(service: Service) -> httpx.Client:
    return sign_in(service, service.key("detect", name="newsroom"))


def test_the_list_shows_each_report_with_its_date_and_figures(client: httpx.Client, folder: Path) -> None:
    report = json.loads((folder / NAME / "report.json").read_text())
    page = client.get("/console/accuracy")
    assert page.status_code == 200, page.text[-1500:]
    names = re.findall(r'<tr id="report-\d+" data-name="([^"]+)"', page.text)
    assert names == [NAME]  # not the folder without a report, not the linked folder
    at = report["verification"]["at_threshold"]
    row = page.text.split(f'data-name="{NAME}"', 1)[1].split("</tr>", 1)[0]
    assert report["generated_at"][:10] in row and "five LFW people" in row
    assert f"{report['threshold']['score']:.1f}" in row
    assert format(at["fmr"], ".3g") in row and f"{100 * at['fnmr']:.2f} %" in row
    assert f"{100 * report['verification']['eer']:.2f} %" in row
    assert f'href="/console/accuracy/reports/{NAME}"' in row
    assert 'id="accuracy-folder"' not in page.text  # the server's folder is shown to admin keys only


def test_a_report_page_shows_its_figures_and_its_files_load(client: httpx.Client, folder: Path) -> None:
    page = client.get(f"/console/accuracy/reports/{NAME}")
    assert page.status_code == 200, page.text[-1500:]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    for finding in json.loads((folder / NAME / "report.json").read_text())["findings"]:
        assert finding.replace("'", "&#39;") in page.text
    images = re.findall(r'<img src="([^"]+)" alt="([^"]+)"', page.text)
    assert {src for src, _ in images} == {f"/console/accuracy/reports/{NAME}/{n}" for n in ("roc.png", "det.png", "scores.png")}
    for src, alt in images:
        png = client.get(src)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png" and alt
        assert png.content == (folder / NAME / src.rsplit("/", 1)[1]).read_bytes()

    html = client.get(f"/console/accuracy/reports/{NAME}/report.html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert html.content == (folder / NAME / "report.html").read_bytes()
    csp = html.headers["content-security-policy"]
    assert "script-src 'none'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
    style = re.search(r"style-src ([^;]+);", csp)
    assert style and re.fullmatch(r"'sha256-[A-Za-z0-9+/=]+'", style.group(1).strip())  # exactly its own style
    assert html.headers["x-content-type-options"] == "nosniff"
    data = client.get(f"/console/accuracy/reports/{NAME}/report.json")
    assert data.status_code == 200 and data.json()["data"]["name"] == "five LFW people"


def _as_written(service: Service, client: httpx.Client, path: str) -> tuple[int, bytes]:
    """GET `path` sent as written, with http.client (httpx would tidy the dots away), in the session."""
    connection = http.client.HTTPConnection(service.url.removeprefix("http://"), timeout=30)
    try:
        connection.request("GET", path, headers={"Cookie": f"regard_session={client.cookies.get('regard_session')}"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(
    "path",
    [
        f"/console/accuracy/reports/{NAME}/secret.txt",  # listed, but not a report file
        f"/console/accuracy/reports/{NAME}/linked.png",  # a link out of the folder
        f"/console/accuracy/reports/{NAME}/nothing.png",
        "/console/accuracy/reports/not-a-report",
        "/console/accuracy/reports/not-a-report/notes.txt",
        "/console/accuracy/reports/linked-report",
        "/console/accuracy/reports/linked-report/report.html",
        "/console/accuracy/reports/..",
        f"/console/accuracy/reports/{NAME}/..",
        "/console/accuracy/reports/%2e%2e/outside.png",
        f"/console/accuracy/reports/{NAME}/%2e%2e%2f%2e%2e%2foutside.png",
        f"/console/accuracy/reports/{NAME}/..%2Freport.json",
    ],
)
def test_nothing_but_the_listed_report_files_can_be_reached(service: Service, client: httpx.Client, path: str) -> None:
    assert _as_written(service, client, f"/console/accuracy/reports/{NAME}/roc.png")[0] == 200  # the same way, a listed file
    status, body = _as_written(service, client, path)
    assert status == 404, (path, status, body[-500:])
    assert b"outside the reports folder" not in body and b"not a report file" not in body


def test_a_stranger_is_sent_to_sign_in(service: Service) -> None:
    with httpx.Client(base_url=service.url) as anonymous:
        for path in ("/console/accuracy", f"/console/accuracy/reports/{NAME}", f"/console/accuracy/reports/{NAME}/roc.png"):
            response = anonymous.get(path, follow_redirects=False)
            assert response.status_code == 303 and response.headers["location"].startswith("/console/sign-in"), path


def test_the_model_card_shows_the_shipped_calibration(client: httpx.Client) -> None:
    page = client.get("/console/accuracy/model-card")
    assert page.status_code == 200, page.text[-1500:]
    table = default_table()
    assert 'id="model-centerface"' in page.text and 'id="model-dlib-resnet"' in page.text
    assert f"{table.threshold_for(DEFAULT_FMR):.1f}" in page.text and f"{table.impostor_pairs:,}" in page.text
    rows = re.findall(r"<tr><td>[^<]+</td><td>([0-9.]+)</td>", page.text.split('id="calibration-table"', 1)[1].split("</table>")[0])
    assert rows == [f"{r['threshold']:.1f}" for r in table.summary()]
    assert page.text.count("the installed file matches its sha256") == 2


def test_without_reports_the_page_says_none_is_configured(tmp_path: Path) -> None:
    with running_service(tmp_path) as service:
        client = sign_in(service, service.key("admin"))
        page = client.get("/console/accuracy")
        assert page.status_code == 200 and 'id="accuracy-not-configured"' in page.text and "--reports" in page.text
        assert client.get(f"/console/accuracy/reports/{NAME}").status_code == 404
        assert client.get(f"/console/accuracy/reports/{NAME}/report.html").status_code == 404


def test_the_reports_folder_may_come_from_the_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from regard.config import Settings
    from regard.service.state import ServiceConfig

    assert Settings.from_env({}).reports_dir is None
    monkeypatch.setenv("REGARD_REPORTS_DIR", str(tmp_path))
    assert ServiceConfig.from_env().reports_dir == tmp_path  # `regard serve --reports` lays itself over it
