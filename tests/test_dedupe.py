"""Acting on duplicates (issue 24): dry run by default, moves to a folder or the trash with an undo log, the index
forgets what left and takes back what undo restores; plans as shell / JSON. Real photos, SQLite and FAISS."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import consistent
from lookalike.cli import main
from lookalike.data.photos import load_photo
from lookalike.retrieval.dedupe import ActionError, apply_plan, plan_actions, plan_script
from lookalike.retrieval.engine import Engine


@pytest.fixture
def library(tmp_path, one_torch_thread) -> tuple[Path, Path]:
    """(pictures, index): chelsea with a half-size JPEG, rocket with a byte-identical copy, four other photos."""
    pics = tmp_path / "pics"
    (pics / "edits").mkdir(parents=True)
    for n in ("chelsea", "rocket", "astronaut", "camera", "coins", "moon"):
        load_photo(n).convert("RGB").save(pics / f"{n}.png")
    cat = load_photo("chelsea").convert("RGB")
    cat.resize((cat.width // 2, cat.height // 2), Image.Resampling.LANCZOS).save(pics / "edits" / "chelsea-small.jpg",
                                                                                 quality=85)
    shutil.copy(pics / "rocket.png", pics / "edits" / "rocket-copy.png")
    for p in pics.rglob("*.*"):
        os.utime(p, (1_500_000_000, 1_500_000_000))
    os.utime(pics / "edits" / "rocket-copy.png", (1_600_000_000, 1_600_000_000))  # newer: the original is kept
    with Engine.open(tmp_path / "index", model="efficientnet_lite0") as eng:
        eng.add([pics], progress=False, workers=0, warn=None)
    return pics, tmp_path / "index"


def not_kept(pics: Path) -> set[Path]:
    return {pics / "edits" / "chelsea-small.jpg", pics / "edits" / "rocket-copy.png"}


def test_dry_run_is_the_default_and_moves_nothing(library, tmp_path, capsys):
    pics, db = library
    before = sorted(p for p in pics.rglob("*") if p.is_file())
    assert main(["duplicates", "--db", str(db), "--move-to", str(tmp_path / "dupes")]) == 0
    out = capsys.readouterr().out
    assert "dry run: 2 files" in out and "--apply" in out and "Nothing was moved" in out
    assert "chelsea-small.jpg" in out and "identical" in out  # the exact copy is flagged
    assert sorted(p for p in pics.rglob("*") if p.is_file()) == before and not (tmp_path / "dupes").exists()


def test_move_apply_then_undo(library, tmp_path, capsys):
    pics, db = library
    dest = tmp_path / "dupes"
    assert main(["duplicates", "--db", str(db), "--move-to", str(dest), "--apply"]) == 0
    out = capsys.readouterr().out
    log = out.split("--undo ")[1].split()[0]
    assert Path(log).is_file() and Path(log).parent == db / "undo"
    for p in not_kept(pics):
        assert not p.exists()
        assert (dest / "pics" / p.relative_to(pics)).is_file()  # the library's layout under the destination
    assert (pics / "chelsea.png").is_file() and (pics / "rocket.png").is_file()  # keepers untouched
    with Engine.open(db, create=False) as eng:
        files = set(eng.store.file_states())
        assert not {str(p) for p in not_kept(pics)} & files and str(pics / "rocket.png") in files
        assert eng.status().files == 6
        consistent(eng)
        assert eng.duplicates().groups == []
    # undo: every file back, indexed again
    assert main(["duplicates", "--db", str(db), "--undo", log]) == 0
    assert "restored 2 files" in capsys.readouterr().out
    for p in not_kept(pics):
        assert p.is_file()
    assert not any(p.is_file() for p in dest.rglob("*"))
    with Engine.open(db, create=False) as eng:
        assert eng.status().files == 8
        consistent(eng)
        assert len(eng.duplicates().groups) == 2


def test_never_overwrites_and_skips_changed_files(library, tmp_path):
    pics, db = library
    dest = tmp_path / "dupes"
    taken = dest / "pics" / "edits" / "rocket-copy.png"
    taken.parent.mkdir(parents=True)
    taken.write_bytes(b"someone else's file")
    with Engine.open(db, create=False) as eng:
        plan = plan_actions(eng.duplicates(), "move", dest, roots=eng.store.roots())
        (pics / "edits" / "chelsea-small.jpg").write_bytes(b"changed since")  # no longer what was grouped
        res = apply_plan(eng, plan, tmp_path / "undo.jsonl")
    assert taken.read_bytes() == b"someone else's file"
    assert (dest / "pics" / "edits" / "rocket-copy-1.png").is_file()
    assert res.done == [str(pics / "edits" / "rocket-copy.png")]
    assert res.skipped and "changed since" in res.skipped[0][1]
    assert (pics / "edits" / "chelsea-small.jpg").read_bytes() == b"changed since"


@pytest.mark.slow
def test_trash_and_undo(library, tmp_path):
    pytest.importorskip("send2trash")
    pics, db = library
    # in a process of its own, whose home trash is under the test's folder (send2trash reads it once, on import)
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "share"))
    log = tmp_path / "undo.jsonl"
    r = subprocess.run([sys.executable, "-m", "lookalike", "duplicates", "--db", str(db), "--trash", "--apply",
                        "--log", str(log)], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "moved 2 files to the system trash" in r.stdout
    trash = tmp_path / "share" / "Trash"
    assert sorted(p.name for p in (trash / "files").iterdir()) == ["chelsea-small.jpg", "rocket-copy.png"]
    assert not any(p.exists() for p in not_kept(pics))
    with Engine.open(db, create=False) as eng:
        assert eng.status().files == 6
    r = subprocess.run([sys.executable, "-m", "lookalike", "duplicates", "--db", str(db), "--undo", str(log)], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "restored 2 files" in r.stdout, r.stderr
    assert all(p.is_file() for p in not_kept(pics))
    assert not list((trash / "files").iterdir()) and not list((trash / "info").iterdir())
    with Engine.open(db, create=False) as eng:
        assert eng.status().files == 8
        consistent(eng)


def test_plans_as_shell_and_json(library, tmp_path, capsys):
    pics, db = library
    script = tmp_path / "plan.sh"
    assert main(["duplicates", "--db", str(db), "--move-to", str(tmp_path / "d"), "--plan", str(script)]) == 0
    assert "Nothing was moved" in capsys.readouterr().out and all(p.exists() for p in not_kept(pics))
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0  # valid shell
    subprocess.run(["sh", str(script)], check=True)  # and it does what it says
    assert not any(p.exists() for p in not_kept(pics)) and (tmp_path / "d" / "pics" / "edits" / "rocket-copy.png").is_file()
    plan_json = tmp_path / "plan.json"
    assert main(["duplicates", "--db", str(db), "--trash", "--plan", str(plan_json)]) == 0
    data = json.loads(plan_json.read_text())
    assert data["action"] == "trash" and data["files"] == len(data["items"])
    with Engine.open(db, create=False) as eng:
        assert "gio trash --" in plan_script(plan_actions(eng.duplicates(), "trash"))


def test_a_group_is_never_emptied_and_bad_destinations_are_refused(library, tmp_path, capsys):
    pics, db = library
    with Engine.open(db, create=False) as eng:
        report = eng.duplicates()
        nobody = {f.path: False for g in report.groups for f in g.files}
        assert plan_actions(report, "move", tmp_path / "d", keep=nobody).items == []  # never the last copy
        with pytest.raises(ActionError, match="inside the indexed folder"):
            plan_actions(report, "move", pics / "dupes", roots=eng.store.roots())
    assert main(["duplicates", "--db", str(db), "--move-to", str(pics / "x"), "--apply"]) == 2
    assert "inside the indexed folder" in capsys.readouterr().err
    assert main(["duplicates", "--db", str(db), "--apply"]) == 2
    assert "--apply needs --move-to DIR or --trash" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n{}\n")
    assert main(["duplicates", "--db", str(db), "--undo", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not an undo log" in err or "not JSON" in err
    assert len(err.strip().splitlines()) == 1


def _duplicates_page(db, monkeypatch):
    """The Duplicates page of a writable app on ``db``, run once (Streamlit's AppTest)."""
    AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
    monkeypatch.setenv("LOOKALIKE_DB", str(db))
    monkeypatch.setenv("LOOKALIKE_UI_ALLOW_WRITE", "1")
    return AppTest.from_string("from lookalike.ui import duplicates_page\nduplicates_page.render()\n",
                               default_timeout=120).run()


def test_duplicates_page_moves_after_confirming_and_undoes(library, tmp_path, monkeypatch):
    pics, db = library
    at = _duplicates_page(db, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    assert any("exact copy" in m.value for m in at.markdown)  # the byte-identical rocket is flagged
    at.text_input(key="dup_dest").input(str(tmp_path / "dupes")).run()
    move = [b for b in at.button if b.key == "dup_apply"][0]
    assert move.label == "Move 2 files" and move.disabled  # not before the confirmation
    at.checkbox(key="dup_sure").check().run()
    [b for b in at.button if b.key == "dup_apply"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Moved 2 files" in s.value for s in at.success)
    assert not any(p.exists() for p in not_kept(pics))
    assert (tmp_path / "dupes" / "pics" / "edits" / "chelsea-small.jpg").is_file()
    assert not [m for m in at.markdown if m.value.startswith("**Group ")]  # no duplicates left in the index
    [b for b in at.button if b.key == "dup_undo"][0].click().run()
    assert any("Put back 2 files" in s.value for s in at.success)
    assert all(p.is_file() for p in not_kept(pics))
    assert len([m for m in at.markdown if m.value.startswith("**Group ")]) == 2


def test_duplicates_page_moves_what_is_marked_at_the_click(library, tmp_path, monkeypatch):
    """A Keep mark made after the page was drawn (its box reruns alone) is honoured by the Move button."""
    from lookalike.ui.duplicates_page import keep_key

    pics, db = library
    at = _duplicates_page(db, monkeypatch)
    at.text_input(key="dup_dest").input(str(tmp_path / "dupes")).run()
    at.checkbox(key="dup_sure").check().run()
    small = str(pics / "edits" / "chelsea-small.jpg")
    at.session_state[keep_key(small)] = True  # marked keep after the button was drawn
    [b for b in at.button if b.key == "dup_apply"][0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Moved 1 file " in s.value for s in at.success)
    assert (pics / "edits" / "chelsea-small.jpg").is_file() and not (pics / "edits" / "rocket-copy.png").exists()
