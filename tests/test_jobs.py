"""Indexing as a server-side job (issue 24): the job runner, cancel that keeps what was committed, unfinished folders,
and the job API of ``lookalike serve`` (POST /index, GET /jobs/{id}, POST /jobs/{id}/cancel) on real small folders."""
from __future__ import annotations

import shutil
import time
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from helpers import consistent
from lookalike.data.photos import photo_crops

from lookalike import Engine
from lookalike.cli import main

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lookalike.ui.api import create_app  # noqa: E402
from lookalike.ui.jobs import RUNNER, JobBusy  # noqa: E402

MODEL = "pixels"


def images_in(db: Path) -> int:
    con = sqlite3.connect(db / "metadata.db")
    try:
        return con.execute("select count(*) from images").fetchone()[0]
    finally:
        con.close()


@pytest.fixture
def folders(photo_dir, tmp_path) -> tuple[Path, Path, Path]:
    """(photos, new crops not yet indexed, index of the photos)."""
    images = Path(shutil.copytree(photo_dir, tmp_path / "photos"))
    with Engine.open(tmp_path / "index", model=MODEL) as eng:
        eng.add([images], progress=False, workers=0, warn=None)
    new = tmp_path / "photos" / "new"
    photo_crops(new, 150, seed=5)
    return images, new, tmp_path / "index"


def test_cancel_keeps_the_committed_chunks_and_marks_the_folder(folders, capsys):
    images, new, db = folders
    seen: list[int] = []

    def progress(phase: str, done: int, total: int | None) -> None:
        if phase == "embedding":
            seen.append(done)

    # stop as soon as the first batch of 16 is embedded; chunks of 8 rows are committed as they fill up
    with Engine.open(db) as eng:
        report = eng.add([images], progress=progress, workers=0, warn=None, batch_size=16, chunk_size=8,
                         stop=lambda: bool(seen and seen[-1] >= 16))
        assert report.cancelled and report.summary().startswith("cancelled: indexed 16,")
        assert eng.unfinished_roots() == [str(images)] and eng.status().unfinished == [str(images)]
        consistent(eng)
    assert images_in(db) == 10 + 16  # the embedded batch was committed, nothing else
    assert main(["status", "--db", str(db)]) == 0
    assert f"root       {images}  (unfinished" in capsys.readouterr().out
    with Engine.open(db) as eng:  # the next run finishes the folder and clears the mark
        report = eng.add([images], progress=False, workers=0, warn=None)
        assert not report.cancelled and report.indexed == 150 - 16
        assert eng.unfinished_roots() == []
        consistent(eng)


def test_a_run_that_fails_leaves_the_folder_unfinished(folders):
    images, new, db = folders
    with Engine.open(db) as eng:
        def boom(phase: str, done: int, total: int | None) -> None:
            if phase == "embedding" and done >= 32:
                raise RuntimeError("disk on fire")
        with pytest.raises(RuntimeError):
            eng.add([images], progress=boom, workers=0, warn=None, batch_size=16, chunk_size=16)
        assert eng.unfinished_roots() == [str(images)]


def test_job_api_indexes_a_real_folder(folders):
    images, new, db = folders
    with TestClient(create_app(db, allow_write=True)) as c:
        r = c.post("/index")
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["state"] == "running" and len(job["id"]) == 12 and job["roots"] == [str(images)]
        again = c.post("/index")
        assert again.status_code == 409 and job["id"] in again.json()["detail"]
        RUNNER.wait(job["id"], 300)
        got = c.get(f"/jobs/{job['id']}")
        assert got.status_code == 200
        st = got.json()
        assert set(st) >= {"id", "state", "phase", "done", "total", "rate", "eta_s", "summary", "skipped", "error",
                           "started_at", "finished_at"}
        assert st["state"] == "done" and st["summary"].startswith("indexed 150,"), st
        assert st["finished_at"] >= st["started_at"] and st["eta_s"] is None
        assert c.get("/index").json()["id"] == job["id"]  # GET /index: the last job
        assert c.get("/status").json()["unfinished"] == []
        # the new images are searched once the engine reopened
        hit = c.post("/search", json={"path": str(sorted(new.iterdir())[3]), "k": 1})
        assert hit.status_code == 200 and hit.json()["results"][0]["path"] == str(sorted(new.iterdir())[3])
        assert c.get("/jobs/nope").status_code == 404
        assert c.post("/jobs/nope/cancel").status_code == 404


def test_job_api_cancel_keeps_rows_and_reports_unfinished(folders):
    images, new, db = folders
    with TestClient(create_app(db, allow_write=True)) as c:
        job = c.post("/index").json()
        r = c.post(f"/jobs/{job['id']}/cancel")  # 150 new images take far longer than this request
        assert r.status_code == 202 and r.json()["state"] in ("cancelling", "cancelled")
        RUNNER.wait(job["id"], 300)
        st = c.get(f"/jobs/{job['id']}").json()
        assert st["state"] == "cancelled" and st["summary"].startswith("cancelled: "), st
        status = c.get("/status").json()
        assert status["unfinished"] == [str(images)]
        kept = images_in(db)
        assert 10 <= kept < 160 and status["images"] == kept  # what was committed is kept and served
        # a second job finishes the folder
        job2 = c.post("/index").json()
        RUNNER.wait(job2["id"], 300)
        assert c.get(f"/jobs/{job2['id']}").json()["state"] == "done"
        assert c.get("/status").json()["unfinished"] == [] and images_in(db) == 160
    with Engine.open(db) as eng:
        consistent(eng)


def test_read_only_service_cannot_cancel(folders):
    images, new, db = folders
    job = RUNNER.start(db, [str(images)])
    try:
        with TestClient(create_app(db)) as c:
            assert c.get(f"/jobs/{job.id}").status_code == 200  # followed by anyone with access
            r = c.post(f"/jobs/{job.id}/cancel")
            assert r.status_code == 403 and "--allow-write" in r.json()["detail"]
    finally:
        RUNNER.cancel(job.id)
        RUNNER.wait(job.id, 300)


def test_runner_one_job_per_index_and_progress(folders, tmp_path):
    images, new, db = folders
    job = RUNNER.start(db, [str(images)])
    try:
        with pytest.raises(JobBusy):
            RUNNER.start(db, [str(images)])
        assert RUNNER.active(db) is job and RUNNER.latest(db) is job
    finally:
        RUNNER.wait(job.id, 300)
    assert job.state == "done" and job.phase is not None and job.done > 0
    assert RUNNER.active(db) is None and RUNNER.latest(db) is job
    # a new index built by a job (as the Index page does), then a folder that does not exist
    other = tmp_path / "other"
    other.mkdir()
    Image.new("RGB", (40, 30), "red").save(other / "red.png")
    j2 = RUNNER.start(tmp_path / "new-index", [str(other)], model=MODEL, create=True)
    RUNNER.wait(j2.id, 300)
    assert j2.state == "done" and images_in(tmp_path / "new-index") == 1
    j3 = RUNNER.start(tmp_path / "new-index", [str(tmp_path / "missing")])
    RUNNER.wait(j3.id, 300)
    assert j3.state == "failed" and "missing" in j3.error and "\n" not in j3.error


def test_progress_reports_rate_and_time_left():
    from lookalike.ui.jobs import JobRunner, JobState

    job = JobState(state="running", id="x")
    report = JobRunner.progress_for(job)
    report("embedding", 0, 100)
    assert job.phase == "embedding" and job.eta_s is None  # nothing to tell yet
    time.sleep(0.6)
    report("embedding", 50, 100)
    assert job.rate > 0 and job.eta_s > 0 and job.eta_s == pytest.approx(50 / job.rate)
    report("signatures", 0, 10)  # a new phase starts its own clock
    assert job.rate is None and job.eta_s is None
