"""`regard doctor`: each check on a real installation, and what it says to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regard.cli.main import main
from regard.store import open_store


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["doctor", "--json", *args])
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] == (code == 0)
    return code, {c["name"]: c for c in report["checks"]}


def test_a_missing_store_fails_and_says_how_to_create_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'typo' / 'regard.db'}"
    code, checks = doctor(capsys, "--store", url, "--master-key", str(tmp_path / "master.key"))
    assert code == 1 and checks["store"]["status"] == "fail" and f"regard init --store {url}" == checks["store"]["fix"]
    assert not (tmp_path / "typo").exists()  # looking created nothing
    assert checks["model centerface"]["status"] == "ok" and checks["model dlib-resnet"]["status"] == "ok"
    assert checks["master key"]["status"] == "warn"


def test_an_initialised_store_passes_and_a_readable_master_key_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, key = f"sqlite:///{tmp_path / 'regard.db'}", tmp_path / "master.key"
    assert main(["init", "--store", url, "--master-key", str(key)]) == 0
    capsys.readouterr()
    code, checks = doctor(capsys, "--store", url, "--master-key", str(key))
    assert code == 0 and "schema version 4 of 4" in checks["store"]["detail"] and checks["disk"]["status"] == "ok"
    key.chmod(0o644)
    code, checks = doctor(capsys, "--store", url, "--master-key", str(key))
    assert code == 1 and checks["master key"]["fix"] == f"chmod 600 {key}"


def test_postgresql_reports_its_schema_and_the_vector_extension(postgres_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    open_store(postgres_url).close()  # created (migrated) as regard init does
    code, checks = doctor(capsys, "--store", postgres_url, "--master-key", str(tmp_path / "none.key"))
    assert code == 0 and "PostgreSQL, schema version" in checks["store"]["detail"]
    assert checks["pgvector"]["status"] == "ok" and checks["pgvector"]["detail"].startswith("vector ")


def test_doctor_says_which_master_key_it_checks_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REGARD_MASTER_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    url = f"sqlite:///{tmp_path / 'srv' / 'regard.db'}"
    code, checks = doctor(capsys, "--store", url)
    assert checks["master key"]["status"] == "warn" and checks["master key"]["detail"].startswith(str(tmp_path / "srv" / "regard.db.master.key"))
    assert "[default: beside the store]" in checks["master key"]["detail"] and checks["master key"]["fix"] == f"regard init --store {url}"
    assert main(["init", "--store", url]) == 0
    capsys.readouterr()
    code, checks = doctor(capsys, "--store", url)
    assert checks["master key"]["status"] == "ok" and "[default: beside the store]" in checks["master key"]["detail"]
    code, checks = doctor(capsys, "--store", url, "--master-key", str(tmp_path / "k"))
    assert "[command line (--master-key)]" in checks["master key"]["detail"]
    assert checks["master key"]["fix"] == f"regard init --store {url} --master-key {tmp_path / 'k'}"
