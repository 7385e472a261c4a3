"""`lookalike serve`: every endpoint and error through FastAPI's TestClient on real small indexes, searches
running while an index update goes on, the token and bind rules of the command, and a real uvicorn process."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from lookalike.data.photos import photo_crops

from lookalike import Engine
from lookalike.cli import main as cli
from lookalike.retrieval.searcher import DenoiseJSON, HitJSON

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from lookalike.ui.api import create_app  # noqa: E402

MODEL = "pixels"  # fast and deterministic
TOKEN = "a-test-token-of-24-chars"


def build_index(images: Path, db: Path) -> Path:
    with Engine.open(db, model=MODEL) as eng:
        eng.add([images], progress=False, workers=0, warn=None)
    return db


@pytest.fixture(scope="module")
def index(photo_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(images, index) for read-only tests: the ten photos."""
    root = tmp_path_factory.mktemp("serve")
    images = Path(shutil.copytree(photo_dir, root / "photos"))
    return images, build_index(images, root / "index")


@pytest.fixture(scope="module")
def client(index):
    with TestClient(create_app(index[1])) as c:
        yield c


@pytest.fixture
def writable(photo_dir, tmp_path) -> tuple[Path, Path]:
    """(images, index) of a private copy, for tests that change files or the index."""
    images = Path(shutil.copytree(photo_dir, tmp_path / "photos"))
    return images, build_index(images, tmp_path / "index")


def upload(path: Path, **form):
    return {"files": {"image": (path.name, path.read_bytes(), "application/octet-stream")},
            "data": {k: str(v) for k, v in form.items()}}


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------- read-only endpoints
def test_health_docs_and_schema(client):
    assert client.get("/health").json() == {"status": "ok"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/search", "/images/{image_id}", "/images/{image_id}/thumbnail", "/status", "/health", "/index"} <= set(spec["paths"])
    body = spec["paths"]["/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    assert "get" in spec["paths"]["/index"] and "post" in spec["paths"]["/index"]


def test_status(client, index):
    st = client.get("/status").json()
    assert st["images"] == 10 and st["vectors"] == 10 and st["model"] == MODEL
    assert st["roots"] == [str(index[0])]
    assert st["read_only"] is True and st["index_job"]["state"] == "idle" and st["reload_error"] is None


def test_search_upload_is_what_search_json_prints(client, index, capsys):
    query = index[0] / "chelsea.png"
    r = client.post("/search", **upload(query, k=3))
    assert r.status_code == 200, r.text
    out = r.json()
    assert cli(["search", str(query), "--db", str(index[1]), "-k", "3", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert out == printed  # one JSON form: SearchResults.to_json()
    assert set(out) == {"results", "denoise"} and out["denoise"] is None  # the one shape, also when not denoised
    hits = out["results"]
    assert hits[0]["path"] == str(query) and hits[0]["score"] > 0.999 and isinstance(hits[0]["id"], int)


def test_search_by_indexed_path_vector_and_min_score(client, index):
    path = str(index[0] / "coffee.png")
    hits = client.post("/search", json={"path": path, "k": 4}).json()["results"]
    assert len(hits) == 4 and hits[0]["path"] == path
    with Engine.open(index[1], create=False) as eng:
        ids, vecs = eng.vectors()
    target = int(ids[3])
    hits = client.post("/search", json={"vector": (vecs[3] * 3.0).tolist(), "k": 2}).json()["results"]  # any scale
    assert hits[0]["id"] == target and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    only = client.post("/search", json={"vector": vecs[3].tolist(), "k": 10, "min_score": 0.99}).json()
    assert [h["id"] for h in only["results"]] == [target] and only["denoise"] is None


def test_search_with_denoise_returns_the_denoised_form(client, index, capsys):
    small = index[0].parent / "small-query.png"
    Image.open(index[0] / "astronaut.png").convert("RGB").resize((48, 48)).save(small)
    r = client.post("/search", **upload(small, k=2, denoise="classical"))
    assert r.status_code == 200, r.text
    out = r.json()
    assert set(out) == {"results", "denoise"} and out["denoise"]["method"] == "classical"
    assert cli(["search", str(small), "--db", str(index[1]), "-k", "2", "--json", "--denoise", "classical"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert out["results"] == printed["results"]
    assert out["denoise"].keys() == printed["denoise"].keys() == set(DenoiseJSON.__annotations__)


@pytest.mark.parametrize("kwargs, code, words", [
    ({"json": {"path": "x", "k": 0}}, 422, "k: "),
    ({"json": {"path": "x", "k": 5000}}, 422, "k: "),
    ({"json": {"path": "x", "min_score": 2}}, 422, "min_score"),
    ({"json": {"path": "x", "denoise": "magic"}}, 422, "denoise"),
    ({"json": {"vector": [0.5] * 7}}, 422, "7 values; this index holds 3072-d"),
    ({"json": {"vector": [0.0] * 3072}}, 422, "all zeros"),
    ({"json": {"vector": [0.1] * 3072, "denoise": "auto"}}, 422, "not to a vector"),
    ({"json": {"path": "x", "vector": [1.0]}}, 422, "exactly one"),
    ({"json": {"k": 3}}, 422, "exactly one"),
    ({"json": {"path": "x", "colour": "red"}}, 422, "colour"),
    ({"json": {"path": "/etc/passwd"}}, 404, "not an indexed file"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
    ({"content": b"hello", "headers": {"content-type": "text/plain"}}, 415, "multipart/form-data"),
    ({"files": {"image": ("q.jpg", b"this is not a jpeg", "image/jpeg")}}, 400, "not an image"),
    ({"files": {"image": ("q.jpg", b"", "image/jpeg")}}, 400, "empty file"),
    ({"files": {"picture": ("q.jpg", b"abc", "image/jpeg")}}, 422, "'image'"),
    ({"files": {"image": ("q.png", png(Image.new("RGB", (8, 8))), "image/png")}, "data": {"k": "many"}}, 422, "k: "),
])
def test_search_errors_are_json_4xx_naming_the_reason(client, kwargs, code, words):
    r = client.post("/search", **kwargs)
    assert r.status_code == code, r.text
    assert words in r.json()["detail"]
    assert "Traceback" not in r.text


def test_upload_cap(index):
    big = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)))  # ~270 KB
    assert len(big) > 200_000
    with TestClient(create_app(index[1], max_upload_mb=0.05)) as c:  # 52 KB
        r = c.post("/search", files={"image": ("big.png", big, "image/png")})  # refused by Content-Length
        assert r.status_code == 413 and "upload limit" in r.json()["detail"]
        r = c.post("/search", content=iter([big[i:i + 8192] for i in range(0, len(big), 8192)]),
                   headers={"content-type": "multipart/form-data; boundary=x"})  # no Content-Length: counted as it streams
        assert r.status_code == 413 and "upload limit" in r.json()["detail"]
        just_over = big[:60_000]  # within the multipart allowance, over the image cap
        r = c.post("/search", files={"image": ("cut.png", just_over, "image/png")})
        assert r.status_code == 413 and r.json()["detail"] == "cut.png: 0.0572 MB is over the 0.05 MB upload limit"
        ok = png(Image.open(index[0] / "coins.png").convert("RGB").resize((64, 64)))
        assert c.post("/search", files={"image": ("ok.png", ok, "image/png")}).status_code == 200


def test_images_and_thumbnails(client, index):
    hit = client.post("/search", json={"path": str(index[0] / "rocket.png"), "k": 1}).json()["results"][0]
    r = client.get(f"/images/{hit['id']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (index[0] / "rocket.png").read_bytes()
    r = client.get(f"/images/{hit['id']}/thumbnail", params={"size": 64})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(r.content)).size) == 64
    for url, code, words in [("/images/9999", 404, "not in the index"), ("/images/9999/thumbnail", 404, "not in the index"),
                             ("/images/abc", 422, "image_id"), (f"/images/{hit['id']}/thumbnail?size=8", 422, "size")]:
        r = client.get(url)
        assert r.status_code == code and words in r.json()["detail"], (url, r.text)


def test_files_outside_the_roots_or_gone_are_never_served(writable, tmp_path):
    images, db = writable
    secret = tmp_path / "secret.png"
    secret.write_bytes((images / "moon.png").read_bytes())
    (images / "moon.png").unlink()
    (images / "moon.png").symlink_to(secret)  # an indexed path that now leads outside the indexed folder
    (images / "clock.png").unlink()
    with TestClient(create_app(db)) as c:
        ids = {Path(h["path"]).name: h["id"] for h in c.post("/search", json={"path": str(images / "camera.png"), "k": 10}).json()["results"]}
        for url in (f"/images/{ids['moon.png']}", f"/images/{ids['moon.png']}/thumbnail"):
            r = c.get(url)
            assert r.status_code == 403 and "outside the indexed folders" in r.json()["detail"]
        r = c.post("/search", json={"path": str(images / "moon.png")})
        assert r.status_code == 403 and "outside" in r.json()["detail"]
        r = c.get(f"/images/{ids['clock.png']}")
        assert r.status_code == 404 and "moved or deleted" in r.json()["detail"]


def test_token(index):
    with TestClient(create_app(index[1], token=TOKEN)) as c:
        assert c.get("/health").status_code == 200
        for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN}):
            r = c.get("/status", headers=headers)
            assert r.status_code == 401 and "bearer token" in r.json()["detail"]
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.post("/search", json={"path": "x"}).status_code == 401
        assert c.get("/images/1").status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/status", headers=good).status_code == 200
        assert c.get("/images/1", headers=good).status_code == 200


def test_read_only_service_refuses_updates(client):
    r = client.post("/index")
    assert r.status_code == 403 and "--allow-write" in r.json()["detail"]
    assert client.get("/index").json()["state"] == "idle"


# ---------------------------------------------------------------------------------- updates
def test_update_in_background_while_searching(writable):
    images, db = writable
    new = photo_crops(images / "new", 80, seed=3)
    errors: list[str] = []
    codes: list[int] = []
    with TestClient(create_app(db, allow_write=True)) as c:
        r = c.post("/index")
        assert r.status_code == 202 and r.json()["state"] == "running"
        again = c.post("/index")  # 80 new images take far longer than this request
        assert again.status_code == 409 and "already running" in again.json()["detail"]
        job = c.app.state.job
        query = (images / "chelsea.png").read_bytes()

        def searcher() -> None:
            while job.state.state == "running":
                try:
                    r = c.post("/search", files={"image": ("q.png", query, "image/png")}, data={"k": "5"})
                    codes.append(r.status_code)
                    c.get("/status")
                except Exception as exc:  # noqa: BLE001 - collected and asserted below
                    errors.append(repr(exc))

        threads = [threading.Thread(target=searcher) for _ in range(4)]
        for t in threads:
            t.start()
        job.wait(300)
        for t in threads:
            t.join(60)
        assert not errors and codes and set(codes) == {200}
        st = c.get("/index").json()
        assert st["state"] == "done" and st["summary"].startswith("indexed 80,"), st
        hit = c.post("/search", **upload(new[7], k=1)).json()["results"][0]
        assert hit["path"] == str(new[7]) and hit["score"] > 0.99
        assert c.get("/status").json()["images"] == 90


def test_changes_by_another_writer_are_picked_up(writable):
    images, db = writable
    with TestClient(create_app(db)) as c:
        extra = photo_crops(images / "later", 3, seed=9)
        before = c.post("/search", **upload(extra[0], k=1)).json()["results"][0]
        assert before["path"] != str(extra[0])
        assert cli(["index", str(images), "--db", str(db), "-q", "--workers", "0"]) == 0  # another writer
        deadline = time.monotonic() + 60  # the server reopens the index in the background
        while (after := c.post("/search", **upload(extra[0], k=1)).json()["results"][0])["path"] != str(extra[0]):
            assert time.monotonic() < deadline, "the new image never became searchable"
            time.sleep(0.1)
        assert after["score"] > 0.99 and c.get("/status").json()["images"] == 13


def test_update_failure_is_reported(writable):
    images, db = writable
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"fh = open({str(db / '.lock')!r}, 'a+'); fcntl.lockf(fh.fileno(), fcntl.LOCK_EX)\n"
        "print('locked', flush=True); time.sleep(120)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with TestClient(create_app(db, allow_write=True)) as c:
            assert c.post("/index").status_code == 202
            c.app.state.job.wait(120)
            st = c.get("/status").json()["index_job"]
            assert st["state"] == "failed" and "another lookalike process is writing" in st["error"]
            assert c.post("/search", json={"path": str(images / "coins.png"), "k": 1}).status_code == 200
    finally:
        holder.kill()
        holder.wait(10)


def test_update_without_folders_is_refused(tmp_path):
    Engine.open(tmp_path / "empty", model=MODEL).close()
    with TestClient(create_app(tmp_path / "empty", allow_write=True)) as c:
        r = c.post("/index")
        assert r.status_code == 409 and "no folders" in r.json()["detail"]
        assert c.post("/search", files={"image": ("q.png", png(Image.new("RGB", (16, 16), "red")), "image/png")}).json()["results"] == []


# ---------------------------------------------------------------------------------- the command
@pytest.mark.parametrize("argv, env, words", [
    (["--host", "0.0.0.0"], {}, "give a token"),
    (["--host", "192.168.1.20", "--token", "short"], {}, "at least 16 characters"),
    (["--host", "0.0.0.0"], {"LOOKALIKE_TOKEN": "short"}, "at least 16 characters"),
    (["--token", TOKEN, "--no-auth"], {}, "not both"),
    (["--port", "70000"], {}, "not a port"),
    (["--max-upload-mb", "0"], {}, "must be positive"),
])
def test_serve_refuses_to_start(index, argv, env, words, capsys, monkeypatch):
    monkeypatch.delenv("LOOKALIKE_TOKEN", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli(["serve", "--db", str(index[1]), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lookalike: ") and words in err and "\n" not in err


def test_serve_refuses_a_port_in_use(index, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert cli(["serve", "--db", str(index[1]), "--port", str(s.getsockname()[1])]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot listen on 127.0.0.1:" in err and "in use" in err and "\n" not in err


def test_serve_refuses_a_folder_that_is_not_an_index(tmp_path, capsys):
    assert cli(["serve", "--db", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a lookalike index" in err and "\n" not in err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_uvicorn_process(writable):
    images, db = writable
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LOOKALIKE_TOKEN=TOKEN, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--db", str(db), "--port", str(port),
                             "--allow-write"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not answer /health within 120 s"
            time.sleep(0.25)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=auth, timeout=60) as c:
            assert httpx.get(f"{base}/status", timeout=10).status_code == 401
            hits = c.post("/search", **upload(images / "coffee.png", k=3)).json()["results"]
            assert hits[0]["path"] == str(images / "coffee.png")
            assert c.get(f"/images/{hits[0]['id']}").content == (images / "coffee.png").read_bytes()
            new = photo_crops(images / "new", 40, seed=5)
            assert c.post("/index").status_code == 202
            codes = []
            while c.get("/index").json()["state"] == "running":
                codes.append(c.post("/search", json={"path": str(images / "camera.png"), "k": 5}).status_code)
                assert time.monotonic() < deadline + 240, "index update did not end"
            job = c.get("/index").json()
            assert job["state"] == "done" and job["summary"].startswith("indexed 40,"), job
            assert set(codes) <= {200}
            assert c.post("/search", **upload(new[0], k=1)).json()["results"][0]["path"] == str(new[0])
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_an_unexpected_fault_is_a_json_500_without_traceback(writable):
    import sqlite3

    images, db = writable
    with TestClient(create_app(db), raise_server_exceptions=False) as c:
        con = sqlite3.connect(db / "metadata.db")
        con.execute("drop table files")  # the database breaks under the running service
        con.commit()
        con.close()
        r = c.post("/search", **upload(images / "coins.png", k=2))
        assert r.status_code == 500 and r.json() == {"detail": "internal error (OperationalError); see the server log"}


# ---------------------------------------------------------------------------------- hostile requests (issue 23)
def test_huge_image_ids_are_a_4xx_not_an_overflow(client):
    for url in ("/images/99999999999999999999", "/images/99999999999999999999/thumbnail", "/images/-1",
                f"/images/{2**63}"):
        r = client.get(url)
        assert r.status_code == 422 and "image_id" in r.json()["detail"], (url, r.text)
    r = client.get(f"/images/{2**63 - 1}")
    assert r.status_code == 404 and "not in the index" in r.json()["detail"]


def test_a_wrong_json_field_is_named_and_the_schema_lists_every_field_sent(client, index):
    r = client.post("/search", json={"path": 123})
    assert r.status_code == 422 and r.json()["detail"].startswith("path: "), r.text
    hit = client.post("/search", json={"path": str(index[0] / "coffee.png"), "k": 1}).json()["results"][0]
    spec = client.get("/openapi.json").json()
    answer = spec["paths"]["/search"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    schemas = spec["components"]["schemas"]
    assert answer == {"$ref": "#/components/schemas/SearchResponse"}  # one shape, denoised or not
    assert schemas["SearchResponse"]["required"] == ["results", "denoise"]
    assert set(hit) == set(schemas["Hit"]["properties"]) == set(HitJSON.__annotations__)  # `paths` included
    assert set(schemas["DenoiseInfo"]["properties"]) == set(DenoiseJSON.__annotations__)


def test_image_bomb_uploads_are_refused_and_the_service_goes_on(client, index):
    from helpers import png_bomb, webp_bomb

    for name, data in (("b.png", png_bomb(14000, 14000)), ("b.webp", webp_bomb(14000, 14000))):
        r = client.post("/search", files={"image": (name, data, "application/octet-stream")})
        assert r.status_code == 400 and "too large to decode: 14000x14000" in r.json()["detail"], r.text
    assert client.post("/search", **upload(index[0] / "coffee.png", k=1)).json()["results"][0]["path"] == str(index[0] / "coffee.png")


def _start_server(db: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--db", str(db), "--port", str(port), *extra],
                            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not answer /health within 120 s"
        time.sleep(0.25)


def _closed_by_server(socks: list[socket.socket], within: float) -> int:
    """How many of ``socks`` the server closed within ``within`` seconds (polled, never slept past)."""
    import select

    open_ = set(socks)
    deadline = time.monotonic() + within
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_), [], [], 0.5)
        for s in ready:
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                open_.discard(s)
    return len(socks) - len(open_)


@pytest.mark.slow
def test_slow_clients_are_timed_out_and_aborted_uploads_log_one_line(index):
    proc, base = _start_server(index[1], "--header-timeout", "1", "--body-timeout", "2")
    host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
    socks: list[socket.socket] = []
    try:
        for _ in range(30):  # slowloris: a request line and half a header, then nothing
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            socks.append(s)
        body = socket.create_connection((host, port), timeout=10)  # a whole head, then a body that never ends
        body.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; "
                     b"filename=\"q.png\"\r\n\r\n\x89PNG")
        socks.append(body)
        assert _closed_by_server(socks, within=60) == len(socks)
        for _ in range(20):  # aborted uploads: the client goes away mid-body
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 50000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; "
                      b"filename=\"q.png\"\r\n\r\n" + b"x" * 1000)
            s.close()
        hit = httpx.post(f"{base}/search", timeout=60, **upload(index[0] / "coffee.png", k=1)).json()["results"][0]
        assert hit["path"] == str(index[0] / "coffee.png")  # the service goes on
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        log = proc.communicate(timeout=30)[0]
    assert "Traceback" not in log, log
    assert len(log.strip().splitlines()) <= 1 + 20 + 2, log  # the start line, at most one line per aborted upload


def test_after_a_failed_update_the_committed_images_are_searched(writable, monkeypatch):
    import errno

    from lookalike.retrieval.index import VectorIndex

    images, db = writable
    new = photo_crops(images / "new", 12, seed=7)
    real_save = VectorIndex.save

    def disk_full(self, path, generation=None):  # the FAISS file cannot be written: the rows are committed already
        raise OSError(errno.ENOSPC, "No space left on device")

    with TestClient(create_app(db, allow_write=True)) as c:
        monkeypatch.setattr(VectorIndex, "save", disk_full)
        assert c.post("/index").status_code == 202
        job = c.app.state.job.wait(120)
        monkeypatch.setattr(VectorIndex, "save", real_save)
        assert job.state == "failed" and "No space left on device" in job.error
        st = c.get("/status").json()
        assert st["images"] == 22 and st["vectors"] == 22, st  # reopened: the committed rows are searched
        assert c.post("/search", **upload(new[0], k=1)).json()["results"][0]["path"] == str(new[0])


def test_a_deleted_root_is_reported_and_the_others_are_synced(writable, tmp_path):
    images, db = writable
    other = Path(shutil.copytree(images, tmp_path / "other"))
    with Engine.open(db) as eng:
        eng.add([other], progress=False, workers=0, warn=None)
    shutil.rmtree(other)
    extra = photo_crops(images / "new", 3, seed=9)
    with TestClient(create_app(db, allow_write=True)) as c:
        assert c.post("/index").status_code == 202
        job = c.app.state.job.wait(120)
        assert job.state == "done", job.error
        assert f"folder not found: {other}" in job.summary and "indexed 3," in job.summary
        hits = c.post("/search", json={"path": str(images / "coffee.png"), "k": 30}).json()["results"]
        assert hits and not any(p.startswith(str(other)) for h in hits for p in h["paths"])
        assert c.post("/search", **upload(extra[0], k=1)).json()["results"][0]["path"] == str(extra[0])


def test_a_deleted_index_folder_is_a_503_not_a_500_or_stale_answers(writable, tmp_path):
    images, db = writable
    with TestClient(create_app(db), raise_server_exceptions=False) as c:
        assert c.get("/status").status_code == 200
        shutil.move(db, tmp_path / "elsewhere")
        for r in (c.get("/status"), c.post("/search", json={"path": str(images / "coins.png"), "k": 1}),
                  c.post("/search", **upload(images / "coins.png", k=1))):
            assert r.status_code == 503 and "index folder is gone" in r.json()["detail"], r.text
        shutil.move(tmp_path / "elsewhere", db)  # back: served again
        assert c.get("/status").status_code == 200


def test_the_server_logs_the_library_through_uvicorns_handler():
    """Under `lookalike serve`, a library warning reaches uvicorn's handler in its format, once, and not the command
    line's one-line handler."""
    code = ("import logging.config\n"
            "from lookalike.log import install_stderr_handler, logger\n"
            "from lookalike.ui.serving import uvicorn_log_config\n"
            "install_stderr_handler()\n"  # what the command line does before `serve` runs
            "logging.config.dictConfig(uvicorn_log_config())\n"
            "logger('lookalike.retrieval.runtime').warning('model cache damaged')\n"
            "logger('lookalike.retrieval.runtime').info('not shown')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stderr.splitlines() if "model cache damaged" in ln]
    assert out.returncode == 0, out.stderr
    assert len(lines) == 1 and lines[0].startswith("WARNING:") and "lookalike:" not in lines[0], out.stderr
    assert "not shown" not in out.stderr
