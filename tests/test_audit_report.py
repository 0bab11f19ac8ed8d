"""`regard audit` on real photos: 56 LFW photos of 33 people (tests/fixtures/lfw, copied from LFW fold 1)
with a made-up groups file. Every figure is checked against an independent computation (scikit-learn's
roc_curve, scipy's Beta quantiles, brute-force loops over the same embeddings) within 1e-9."""

from __future__ import annotations

import base64
import itertools
import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import auc as sk_auc
from sklearn.metrics import roc_auc_score, roc_curve

import regard
from regard.accuracy import dataset as ds
from regard.accuracy import metrics
from regard.accuracy.html import render_html
from regard.accuracy.report import build, write
from regard.accuracy.schema import SCHEMA, validate
from regard.cli import main as cli_main
from regard.errors import RegardError
from regard.match import ThresholdTable, default_table, similarity
from tests.conftest import FIXTURES

LFW = FIXTURES / "lfw"
GROUPS = FIXTURES / "audit" / "groups.csv"
PAIRS = FIXTURES / "audit" / "pairs.txt"
TOL = 1e-9


@pytest.fixture(scope="module")
def folder_data() -> ds.Dataset:
    return ds.load(LFW)


@pytest.fixture(scope="module")
def embedded(folder_data: ds.Dataset) -> ds.Embedded:
    return ds.embed_photos(folder_data, progress=False)


@pytest.fixture(scope="module")
def audit(folder_data: ds.Dataset, embedded: ds.Embedded):
    return build(folder_data, embedded, groups=ds.read_groups(GROUPS), groups_source=str(GROUPS))


def _all_pair_scores(data: ds.Dataset, embedded: ds.Embedded) -> tuple[list[float], list[float]]:
    """Independent: every pair of photos with a face, scored one by one with regard.match.similarity."""
    genuine, impostor = [], []
    ok = [k for k in range(len(data.photos)) if embedded.has_face[k]]
    for i, j in itertools.combinations(ok, 2):
        s = similarity(embedded.vectors[i], embedded.vectors[j])
        (genuine if data.persons[i] == data.persons[j] else impostor).append(s)
    return genuine, impostor


def test_folder_pairs_and_scores_are_every_pair_of_the_photos(folder_data, embedded, audit):
    assert len(folder_data.photos) == 56 and folder_data.person_count == 33
    genuine, impostor = _all_pair_scores(folder_data, embedded)
    assert len(genuine) == 45 and len(impostor) == 56 * 55 // 2 - 45
    np.testing.assert_allclose(np.sort(audit.genuine), np.sort(genuine), rtol=0, atol=TOL)
    np.testing.assert_allclose(np.sort(audit.impostor), np.sort(impostor), rtol=0, atol=TOL)
    # The embeddings are the pipeline's own: the same as regard.embed gives for the photo.
    k = folder_data.photos.index(Path("Akhmed_Zakayev/Akhmed_Zakayev_0003.jpg"))
    np.testing.assert_allclose(embedded.vectors[k], regard.embed(LFW / folder_data.photos[k]), atol=1e-6)


def test_verification_figures_equal_scikit_learn(audit):
    v = audit.report["verification"]
    g, i = audit.genuine, audit.impostor
    y = np.concatenate([np.ones(g.size), np.zeros(i.size)])
    s = np.concatenate([g, i])
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    assert v["auc"] == pytest.approx(sk_auc(fpr, tpr), abs=TOL)
    assert v["auc"] == pytest.approx(roc_auc_score(y, s), abs=TOL)

    # EER: where FPR = 1 - TPR, linear between scikit-learn's straddling points.
    fnr = 1 - tpr
    k = int(np.flatnonzero(fnr - fpr <= 0)[0])
    w = (fnr[k - 1] - fpr[k - 1]) / ((fnr[k - 1] - fpr[k - 1]) - (fnr[k] - fpr[k]))
    assert v["eer"] == pytest.approx(fpr[k - 1] + w * (fpr[k] - fpr[k - 1]), abs=TOL)

    # TAR at FMR x: scikit-learn's best TPR with FPR <= x, at its threshold.
    assert [r["target_fmr"] for r in v["tar_at_fmr"]] == [1e-2, 1e-3]  # 1,495 pairs: 1e-4 is not measurable
    assert v["unmeasurable_fmr_targets"] == [1e-4, 1e-5, 1e-6]
    for row in v["tar_at_fmr"]:
        best = int(np.flatnonzero(fpr <= row["target_fmr"])[-1])
        assert row["tar"] == pytest.approx(tpr[best], abs=TOL)
        assert row["fmr"] == pytest.approx(fpr[best], abs=TOL)
        assert row["threshold"] == pytest.approx(thr[best], abs=TOL)
        assert row["few_errors"] is (row["target_fmr"] * i.size < 20)

    # FMR and FNMR at the deployed threshold, counted directly.
    at = v["at_threshold"]
    t = default_table().threshold_for(1e-3)
    assert at["threshold"] == t
    assert at["fmr"] == pytest.approx(np.mean(i >= t), abs=TOL)
    assert at["fnmr"] == pytest.approx(np.mean(g < t), abs=TOL)
    assert at["false_matches"] == int(np.sum(i >= t)) and at["impostor_pairs"] == i.size

    # The score grid the threshold table is made of.
    grid = np.array(v["curve"]["scores"])
    for score in (0.0, 40.0, 50.5, 55.6, 70.0, 100.0):
        k = int(np.argmin(np.abs(grid - score)))
        assert v["curve"]["fmr"][k] == pytest.approx(np.mean(i >= grid[k]), abs=TOL)
        assert v["curve"]["fnmr"][k] == pytest.approx(np.mean(g < grid[k]), abs=TOL)


def test_clopper_pearson_equals_scipy_beta_quantiles():
    from scipy.stats import beta

    for k, n in [(0, 10), (3, 10), (10, 10), (1, 1495), (323, 324290), (3, 324290), (77, 931), (0, 324290)]:
        lo, hi = metrics.clopper_pearson(k, n)
        want_lo = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
        want_hi = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
        assert lo == pytest.approx(want_lo, rel=1e-9, abs=1e-15)
        assert hi == pytest.approx(want_hi, rel=1e-9, abs=1e-15)
    with pytest.raises(RegardError, match="cannot come from"):
        metrics.clopper_pearson(5, 3)


def test_group_figures_recomputed_from_persons(folder_data, embedded, audit):
    groups = ds.read_groups(GROUPS)
    g = audit.report["groups"]
    assert [r["group"] for r in g["rows"]] == ["north", "south", "west"]
    assert "never infers" in g["note"]
    threshold = g["threshold"]
    ok = [k for k in range(len(folder_data.photos)) if embedded.has_face[k]]
    for row in g["rows"]:
        same, diff = [], []
        for i, j in itertools.combinations(ok, 2):
            pi, pj = folder_data.persons[i], folder_data.persons[j]
            if groups[pi] == groups[pj] == row["group"]:
                s = similarity(embedded.vectors[i], embedded.vectors[j])
                (same if pi == pj else diff).append(s)
        assert row["genuine_pairs"] == len(same) and row["impostor_pairs"] == len(diff)
        assert row["fmr"] == pytest.approx(np.mean(np.array(diff) >= threshold), abs=TOL)
        assert row["fnmr"] == pytest.approx(np.mean(np.array(same) < threshold), abs=TOL)
        assert row["persons"] == sum(1 for p, grp in groups.items() if grp == row["group"])
    # A lower threshold gives false matches, and then ratios to the best group with intervals.
    low = build(folder_data, embedded, threshold=45.0, groups=groups)
    rows = low.report["groups"]["rows"]
    best = min(rows, key=lambda r: (r["fmr"], -r["impostor_pairs"]))
    assert low.report["groups"]["best_fmr_group"] == best["group"] and best["fmr"] > 0
    for row in rows:
        assert row["fmr_ratio"] == pytest.approx(row["fmr"] / best["fmr"], abs=TOL)
        lo, hi = row["fmr_ratio_ci"]  # over persons; unbounded (None) where the best group drew no false match
        assert lo <= row["fmr_ratio"] and (hi is None or row["fmr_ratio"] <= hi)
    assert any("Group" in f and "1 in" in f for f in low.report["findings"])


def test_person_bootstrap_equals_explicitly_resampled_persons(folder_data, embedded, audit):
    """A bootstrap replicate's rate equals the rate counted on a dataset where each person's photos
    are copied as many times as the person was drawn."""
    persons = sorted(set(folder_data.persons))
    index = {p: k for k, p in enumerate(persons)}
    groups = ds.read_groups(GROUPS)
    members = [np.array([index[p] for p in persons if groups[p] == g]) for g in ("north", "south", "west")]
    weights = metrics.person_weights(members, len(persons), 5, seed=3)
    assert np.array_equal(weights.sum(axis=1), np.full(5, len(persons)))
    ok = [k for k in range(len(folder_data.photos)) if embedded.has_face[k]]
    threshold = 50.0
    for w in weights:
        for group_members in members:
            copies = [(k, c) for k in ok if index[folder_data.persons[k]] in group_members for c in range(int(w[index[folder_data.persons[k]]]))]
            fm = n = fnm = m = 0
            for (i, ci), (j, cj) in itertools.combinations(copies, 2):
                pi, pj = folder_data.persons[i], folder_data.persons[j]
                if pi == pj and (ci != cj or i == j):
                    continue  # a photo with its own copy, or across copies of one person: not a new pair
                s = similarity(embedded.vectors[i], embedded.vectors[j])
                if pi == pj:
                    m, fnm = m + 1, fnm + (s < threshold)
                else:
                    n, fm = n + 1, fm + (s >= threshold)
            pairs = [(i, j) for i, j in itertools.combinations(ok, 2) if index[folder_data.persons[i]] in group_members and index[folder_data.persons[j]] in group_members]
            pa = np.array([index[folder_data.persons[i]] for i, _ in pairs])
            pb = np.array([index[folder_data.persons[j]] for _, j in pairs])
            scores = np.array([similarity(embedded.vectors[i], embedded.vectors[j]) for i, j in pairs])
            imp, gen = pa != pb, pa == pb
            got_fmr = metrics.bootstrap_rates(pa[imp], pb[imp], scores[imp] >= threshold, w[None, :])[0]
            got_fnmr = metrics.bootstrap_rates(pa[gen], pb[gen], scores[gen] < threshold, w[None, :])[0]
            assert got_fmr == pytest.approx(fm / n, abs=TOL) if n else np.isnan(got_fmr)
            assert got_fnmr == pytest.approx(fnm / m, abs=TOL) if m else np.isnan(got_fnmr)
    rows = audit.report["groups"]["rows"]
    assert all(r["fmr_ci_persons"] is not None for r in rows)
    assert audit.report["groups"]["bootstrap"]["replicates"] == metrics.BOOTSTRAP_REPLICATES


def test_identification_against_a_brute_force_search(folder_data, embedded, audit):
    ident = audit.report["identification"]
    by_person: dict[str, list[int]] = {}
    for k, p in enumerate(folder_data.persons):
        by_person.setdefault(p, []).append(k)
    gallery = {p: ks[0] for p, ks in by_person.items() if len(ks) > 1}
    hits = mated = non_mated = 0
    for p, ks in by_person.items():
        for k in ks[1:] if p in gallery else ks:
            scores = {q: similarity(embedded.vectors[k], embedded.vectors[g]) for q, g in gallery.items()}
            if p in gallery:
                mated += 1
                hits += all(scores[p] > s for q, s in scores.items() if q != p)
            else:
                non_mated += 1
    assert (ident["gallery"], ident["mated_searches"], ident["non_mated_searches"]) == (len(gallery), mated, non_mated)
    assert ident["rank1"] == pytest.approx(hits / mated, abs=TOL)
    assert ident["at_fpir"] is None  # 22 non-mated searches cannot measure an FPIR of 1e-2
    assert any("too few to measure an FPIR" in w for w in audit.report["warnings"])


def test_report_files_html_plots_and_schema(audit, tmp_path):
    paths = write(audit, tmp_path)
    report = json.loads(paths["json"].read_text())
    schema = json.loads(paths["schema"].read_text())
    assert validate(report, schema) == []
    broken = json.loads(json.dumps(report))
    broken["verification"]["eer"] = 1.5
    del broken["data"]["photos"]
    problems = validate(broken, schema)
    assert any("eer" in p for p in problems) and any("'photos'" in p for p in problems)

    class Images(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.images: dict[str, bytes] = {}
            self.external: list[str] = []

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "img":
                assert a["src"].startswith("data:image/png;base64,"), "plots are embedded, not linked"
                self.images[a["data-name"]] = base64.b64decode(a["src"].split(",", 1)[1])
            if tag in ("script", "link") or (tag == "a" and a.get("href", "").startswith("http")):
                self.external.append(tag)

    parser = Images()
    parser.feed(paths["html"].read_text())
    assert set(parser.images) == {"roc.png", "det.png", "scores.png", "groups.png"}
    assert not parser.external
    for name, png in parser.images.items():
        assert png.startswith(b"\x89PNG") and png == (tmp_path / name).read_bytes()
    html = paths["html"].read_text()
    assert "never infers" in html and "Findings" in html and audit.report["data"]["name"] in html


def test_cli_calibrates_applies_a_threshold_and_appends_to_a_card(tmp_path, capsys):
    store = f"sqlite:///{tmp_path / 'regard.db'}"
    assert cli_main(["init", "--store", store, "--master-key", str(tmp_path / "master.key")]) == 0
    assert cli_main(["collection", "create", "staff", "--purpose", "door access", "--store", store, "--actor", "alice"]) == 0
    card = tmp_path / "CARD.md"
    card.write_text("# Card\n")
    out = tmp_path / "audit"
    code = cli_main(
        [
            "audit", str(LFW), "--out", str(out), "--groups", str(GROUPS), "--calibrate",
            "--apply-to", "staff", "--target-fmr", "1e-2", "--store", store, "--actor", "alice",
            "--append-card", str(card),
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    table = ThresholdTable.from_dict(json.loads((out / "calibration.json").read_text()))
    assert report["calibration"]["path"] == str(out / "calibration.json")
    genuine, impostor = np.array(report["verification"]["curve"]["fnmr"]), np.array(report["verification"]["curve"]["fmr"])
    np.testing.assert_allclose(table.fnmr, genuine, atol=TOL)
    np.testing.assert_allclose(table.fmr, impostor, atol=TOL)
    assert table.impostor_pairs == report["verification"]["impostor_pairs"]

    from regard.store import open_store

    s = open_store(store)
    collection = s.get_collection("staff")
    assert collection.threshold == table.threshold_for(1e-2) == report["applied"]["threshold"]
    assert collection.threshold_source["target_fmr"] == 1e-2
    assert s.search_threshold("staff") == collection.threshold
    entries = s.audit_entries(collection="staff", action="collection_update")
    assert entries and entries[-1].actor == "alice" and entries[-1].details["threshold"] == collection.threshold
    assert "FPIR" in (out / "report.html").read_text()
    assert "## Audit: fixtures/lfw" in card.read_text()


def test_pairs_file_layout(tmp_path, capsys):
    data = ds.load(PAIRS, images=LFW)
    assert data.kind == "pairs" and len(data.pairs) == 49 and int(data.pairs.same.sum()) == 17
    assert cli_main(["audit", str(PAIRS), "--images", str(LFW), "--out", str(tmp_path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    report = json.loads(Path(summary["json"]).read_text())
    assert report["identification"] is None  # 1:N needs person folders
    assert report["verification"]["tar_at_fmr"] == []  # 32 different-person pairs: no target measurable
    assert report["verification"]["unmeasurable_fmr_targets"][0] == 1e-2


def test_degenerate_inputs_give_clear_messages(folder_data, embedded, tmp_path, capsys):
    # A group with one person: its FMR cannot be measured, and the report says so.
    groups = ds.read_groups(GROUPS)
    groups["Abel_Pacheco"] = "solo"
    audit = build(folder_data, embedded, groups=groups)
    solo = next(r for r in audit.report["groups"]["rows"] if r["group"] == "solo")
    assert solo["fmr"] is None and solo["fmr_ci"] is None and solo["fnmr"] is not None
    assert any("group 'solo' has one person" in w for w in audit.report["warnings"])
    assert validate(audit.report, SCHEMA) == []
    render_html(audit.report, audit.pictures)

    # No different-person pairs: one person only.
    one = tmp_path / "one"
    shutil.copytree(LFW / "Ann_Veneman", one / "Ann_Veneman")
    with pytest.raises(RegardError, match="no different-person pairs"):
        ds.load(one)
    assert cli_main(["audit", str(one), "--out", str(tmp_path / "o1")]) == 2
    assert "no different-person pairs" in capsys.readouterr().err

    # No same-person pairs: one photo each.
    singles = tmp_path / "singles"
    for name in ("Abdul_Rahman", "Afton_Smith"):
        shutil.copytree(LFW / name, singles / name)
    with pytest.raises(RegardError, match="no same-person pairs"):
        ds.load(singles)

    # Photos with no face: counted as failures to enrol, named, left out of the score figures.
    mixed = tmp_path / "mixed"
    for name in ("Ann_Veneman", "Amber_Tamblyn", "Akhmed_Zakayev"):
        shutil.copytree(LFW / name, mixed / name)
    shutil.copy(FIXTURES / "dogs.jpg", mixed / "Amber_Tamblyn" / "dogs.jpg")
    data = ds.load(mixed)
    result = build(data, ds.embed_photos(data, progress=False))
    e = result.report["enrolment"]
    assert e["no_face"] == 1 and e["no_face_examples"] == ["Amber_Tamblyn/dogs.jpg"]
    assert result.report["verification"]["genuine_pairs_without_face"] == 2
    assert any("gave no face" in w for w in result.report["warnings"])

    # Nothing but photos without a face.
    dogs = tmp_path / "dogs"
    for person in ("a", "b"):
        (dogs / person).mkdir(parents=True)
        for k in range(2):
            shutil.copy(FIXTURES / "dogs.jpg", dogs / person / f"{k}.jpg")
    data = ds.load(dogs)
    with pytest.raises(RegardError, match="no face was found in any"):
        build(data, ds.embed_photos(data, progress=False))

    # Malformed inputs.
    bad = tmp_path / "groups.csv"
    bad.write_text("person,group\nAbel_Pacheco,x,y\n")
    with pytest.raises(RegardError, match="groups.csv:2: expected `person,group`"):
        ds.read_groups(bad)
    bad.write_text("Nobody,x\n")
    with pytest.raises(RegardError, match="no person of the data is in the groups file"):
        build(folder_data, embedded, groups=ds.read_groups(bad))
    assert cli_main(["audit", str(LFW), "--out", str(tmp_path / "o2"), "--apply-to", "staff"]) == 2
    assert "--apply-to and --target-fmr go together" in capsys.readouterr().err
    fold = tmp_path / "fold"  # an LFW fold's layout: DATA/pairs.txt and DATA/lfw/person/photo.jpg
    shutil.copytree(one, fold / "lfw")
    shutil.copy(PAIRS, fold / "pairs.txt")
    assert cli_main(["audit", str(fold), "--out", str(tmp_path / "o3")]) == 2
    err = capsys.readouterr().err
    assert "no person folders with photos" in err and "give the pairs file" in err


def test_impostor_sampling_is_seeded_and_without_repeats():
    a = ds.load(LFW, impostor_pairs=500, seed=7)
    b = ds.load(LFW, impostor_pairs=500, seed=7)
    c = ds.load(LFW, impostor_pairs=500, seed=8)
    imp = ~a.pairs.same
    assert imp.sum() == 500 and a.seed == 7 and a.impostor_available == 1495
    keys = a.pairs.a[imp] * 1000 + a.pairs.b[imp]
    assert len(set(keys.tolist())) == 500
    assert all(a.persons[i] != a.persons[j] for i, j in zip(a.pairs.a[imp], a.pairs.b[imp]))
    assert np.array_equal(a.pairs.a, b.pairs.a) and np.array_equal(a.pairs.b, b.pairs.b)
    assert not np.array_equal(a.pairs.a[imp], c.pairs.a[~c.pairs.same])


def test_models_card_prints_each_card_with_its_calibration(capsys):
    assert cli_main(["models", "--card"]) == 0
    text = capsys.readouterr().out
    assert "Model card: centerface" in text and "Model card: dlib-resnet" in text
    table = default_table()
    assert table.source in text and f"{table.threshold_for(1e-3):.1f}" in text
    assert cli_main(["models", "--card", "--json"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert cards[1]["calibration"]["impostor_pairs"] == table.impostor_pairs


def test_one_to_n_note_grows_with_the_collection():
    from regard.accuracy.findings import one_to_n_note

    note = one_to_n_note(default_table(), 60.0)
    fpir = [r["fpir"] for r in note["rows"]]
    assert fpir == sorted(fpir) and math.isclose(fpir[0], 1 - (1 - note["fmr"]) ** 10)
