"""Near-duplicate groups on a real index (efficientnet_lite0, SQLite, FAISS): grouping, threshold, keep, CLI."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from lookalike.cli import main
from lookalike.data.photos import load_photo
from lookalike.retrieval.duplicates import DEFAULT_THRESHOLD, duplicate_components, find_duplicates
from lookalike.retrieval.engine import Engine

OLD = 1_500_000_000  # mtimes (seconds) set before indexing: older files are kept on a tie of resolution


@pytest.fixture(scope="module")
def dup_tree(tmp_path_factory, one_torch_thread) -> Path:
    """Real photos; chelsea with a half-size JPEG and a 90 % crop, coffee with a colour edit, rocket twice
    (byte-identical, the copy older), and six unrelated photos."""
    root = tmp_path_factory.mktemp("dups")
    pics = root / "pics"
    (pics / "edits").mkdir(parents=True)
    for n in ("chelsea", "coffee", "rocket", "astronaut", "camera", "coins", "moon", "clock", "hubble_deep_field"):
        load_photo(n).convert("RGB").save(pics / f"{n}.png")
    cat = load_photo("chelsea").convert("RGB")
    w, h = cat.size
    cat.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(pics / "edits" / "chelsea-small.jpg", quality=80)
    cat.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(pics / "edits" / "chelsea-crop.png")
    ImageEnhance.Color(load_photo("coffee").convert("RGB")).enhance(1.3).save(pics / "edits" / "coffee-colour.png")
    shutil.copy(pics / "rocket.png", pics / "edits" / "rocket-copy.png")
    for p in pics.rglob("*.*"):
        os.utime(p, (OLD + 100, OLD + 100))
    os.utime(pics / "edits" / "rocket-copy.png", (OLD, OLD))
    with Engine.open(root / "index", model="efficientnet_lite0") as eng:
        eng.add([pics], progress=False, workers=0, warn=None)
    return root


@pytest.fixture
def engine(dup_tree):
    with Engine.open(dup_tree / "index", create=False) as eng:
        yield eng


def names(report) -> list[set[str]]:
    return [{os.path.basename(f.path) for f in g.files} for g in report.groups]


def test_default_threshold_finds_the_edited_copies_and_nothing_else(engine):
    rep = find_duplicates(engine)
    assert rep.threshold == DEFAULT_THRESHOLD and rep.images == 12 and rep.method == "exact"
    assert sorted(names(rep), key=len) == sorted([{"chelsea.png", "chelsea-small.jpg", "chelsea-crop.png"},
                                                  {"coffee.png", "coffee-colour.png"},
                                                  {"rocket.png", "rocket-copy.png"}], key=len)
    assert [len(g.files) for g in rep.groups] == [3, 2, 2]  # largest group first
    cat = rep.groups[0]
    assert all(DEFAULT_THRESHOLD <= f.similarity <= 1.0 for f in cat.files)
    assert cat.min_similarity == min(f.similarity for f in cat.files) < 1.0
    assert rep.files == 7 and rep.reclaimable == sum(g.reclaimable for g in rep.groups) > 0
    json.dumps(rep.to_dict())  # plain types only


def test_keep_is_the_largest_then_the_oldest(engine, dup_tree):
    rep = find_duplicates(engine)
    keep = {os.path.basename(g.keep) for g in rep.groups}
    # chelsea.png is larger than its half-size and cropped copies; the rocket copy is byte-identical and older
    assert keep == {"chelsea.png", "coffee.png", "rocket-copy.png"}
    for g in rep.groups:
        assert [f.keep for f in g.files].count(True) == 1 and g.files[0].keep and g.files[0].path == g.keep
        assert g.reclaimable == sum(f.size for f in g.files[1:])
    rocket = next(g for g in rep.groups if "rocket" in g.keep)
    assert {f.image_id for f in rocket.files} == {rocket.files[0].image_id}  # one stored image, two paths
    assert rocket.files[0].mtime == pytest.approx(OLD) and rocket.files[1].mtime == pytest.approx(OLD + 100)


def test_threshold_is_a_cosine_similarity(engine):
    strict = find_duplicates(engine, threshold=1.0)
    assert names(strict) == [{"rocket.png", "rocket-copy.png"}]  # only the byte-identical copies
    loose = find_duplicates(engine, threshold=0.4)
    # groups only grow as the threshold falls: every group at the default is inside one group at 0.4
    for g in names(find_duplicates(engine)):
        assert any(g <= big for big in names(loose))
    # unrelated dark photos link at 0.4 (hubble-clock 0.44, hubble-moon 0.44, hubble-coins 0.40): one component
    assert {"hubble_deep_field.png", "clock.png", "moon.png", "coins.png"} in names(loose)
    with pytest.raises(ValueError):
        find_duplicates(engine, threshold=0)
    with pytest.raises(ValueError):
        find_duplicates(engine, threshold=1.5)


def test_cells_with_every_cell_probed_equal_the_exact_method(engine):
    exact = find_duplicates(engine)
    cells = find_duplicates(engine, nlist=4, nprobe=4)
    assert cells.method == "cells 4, probe 4" and names(cells) == names(exact)


def test_components_on_vectors_exact_and_by_cells():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 64)).astype(np.float32)
    x[2900:] = x[:100] + 0.05 * rng.standard_normal((100, 64)).astype(np.float32)  # 100 near-copies
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact, method = duplicate_components(x, 0.95)
    assert method == "exact"
    assert all(exact[i] == exact[2900 + i] for i in range(100))
    assert len(set(exact.tolist())) == 2900  # random 64-d vectors are never that close
    full, method = duplicate_components(x, 0.95, nlist=16, nprobe=16)
    assert method == "cells 16, probe 16" and np.array_equal(_canon(full), _canon(exact))
    probed, _ = duplicate_components(x, 0.95, nlist=16, nprobe=4)
    assert sum(probed[i] == probed[2900 + i] for i in range(100)) >= 95


def _canon(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered by first appearance (component ids differ between runs)."""
    first: dict[int, int] = {}
    return np.array([first.setdefault(int(lab), len(first)) for lab in labels])


def test_removed_files_leave_their_group(tmp_path, dup_tree):
    shutil.copytree(dup_tree / "index", tmp_path / "index")
    with Engine.open(tmp_path / "index", create=False) as eng:
        eng.remove([str(dup_tree / "pics" / "edits" / "coffee-colour.png")])
        assert {"coffee.png", "coffee-colour.png"} not in names(find_duplicates(eng))
        assert len(find_duplicates(eng).groups) == 2


def test_cli_text_json_and_csv(dup_tree, capsys):
    db = str(dup_tree / "index")
    assert main(["duplicates", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "group 1: 3 files" in out and "keep" in out and "Nothing was deleted" in out
    assert main(["duplicates", "--db", db, "--json", "--threshold", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["threshold"] == 1.0 and len(data["groups"]) == 1
    assert {os.path.basename(f["path"]) for f in data["groups"][0]["files"]} == {"rocket.png", "rocket-copy.png"}
    assert main(["duplicates", "--db", db, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 7 and {r["group"] for r in rows} == {"1", "2", "3"}
    assert sum(int(r["keep"]) for r in rows) == 3
    assert rows[0]["keep"] == "1" and os.path.basename(rows[0]["path"]) == "chelsea.png"


@pytest.mark.parametrize("argv, message", [
    (["--threshold", "0"], "must be within (0, 1]"),
    (["--threshold", "abc"], "expected a number"),
    (["--json", "--csv"], "not allowed with"),
])
def test_cli_bad_arguments(dup_tree, capsys, argv, message):
    assert main(["duplicates", "--db", str(dup_tree / "index"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_cli_not_an_index(tmp_path, capsys):
    assert main(["duplicates", "--db", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a lookalike index" in err and "Traceback" not in err


# ---------------------------------------------------------------------------- the web page
def test_duplicates_page_shows_groups_marks_and_exports(dup_tree, monkeypatch):
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    from lookalike.ui.duplicates_page import export_rows, keep_key

    monkeypatch.setenv("LOOKALIKE_DB", str(dup_tree / "index"))
    monkeypatch.delenv("LOOKALIKE_UI_READ_ONLY", raising=False)
    files_before = sorted(p.name for p in (dup_tree / "pics").rglob("*.*"))
    at = AppTest.from_string("from lookalike.ui import duplicates_page\nduplicates_page.render()\n",
                             default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Duplicates"
    heads = [m.value for m in at.markdown if m.value.startswith("**Group ")]
    assert [h.split(" · ")[1] for h in heads] == ["3 files", "2 files", "2 files"]
    assert len(at.image) == 7
    boxes = {b.key: b for b in at.checkbox}
    chelsea = str(dup_tree / "pics" / "chelsea.png")
    small = str(dup_tree / "pics" / "edits" / "chelsea-small.jpg")
    assert boxes[keep_key(chelsea)].value and not boxes[keep_key(small)].value  # the suggestion

    labels = [b.proto.label for b in at.get("download_button")]
    assert labels[:2] == ["Download CSV", "Download JSON"] and "Download plan (shell script)" in labels
    # mark the half-size copy to keep as well: the export follows the marks, the suggestion stays
    at.checkbox(key=keep_key(small)).check().run()
    assert at.session_state[keep_key(small)] is True
    with Engine.open(dup_tree / "index", create=False) as eng:
        report = find_duplicates(eng)
    rows = {r["path"]: r for r in export_rows(report, {small: True})}
    assert rows[small]["keep"] == 1 and rows[small]["suggested_keep"] == 0 and rows[chelsea]["keep"] == 1
    assert {r["path"]: r["keep"] for r in export_rows(report, {})} == {f.path: int(f.keep) for g in report.groups
                                                                       for f in g.files}
    assert any("Files not marked keep: 3" in c.value for c in at.caption)  # 4 before the mark
    [b for b in at.button if b.label == "Reset to suggestions"][0].click().run()
    assert not at.checkbox(key=keep_key(small)).value
    # a stricter threshold leaves only the byte-identical copies
    at.slider(key="dup_threshold").set_value(1.0).run()
    assert len([m for m in at.markdown if m.value.startswith("**Group ")]) == 1
    assert sorted(p.name for p in (dup_tree / "pics").rglob("*.*")) == files_before  # nothing deleted


def test_connected_labels_match_scipy_without_needing_it():
    sparse = pytest.importorskip("scipy.sparse")
    from scipy.sparse.csgraph import connected_components

    from lookalike.retrieval.duplicates import connected_labels

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 300))
        a, b = rng.integers(0, n, n), rng.integers(0, n, n)
        _, ref = connected_components(sparse.coo_matrix((np.ones(n, np.int8), (a, b)), shape=(n, n)), directed=False)
        assert np.array_equal(ref, connected_labels(n, a, b))
    chain = np.arange(999)
    assert (connected_labels(1000, chain[::-1], chain[::-1] + 1) == 0).all()
    assert list(connected_labels(3, np.array([], int), np.array([], int))) == [0, 1, 2]
