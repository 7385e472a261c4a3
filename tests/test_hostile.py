"""Hostile folders, queries and arguments (issue 14): each test reproduces an attack that once hung, crashed,
printed a traceback or gave a stale answer. The table in docs/history/benchmarks-2026-11.md (section 5.1) names them."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import consistent
from lookalike import Engine, EngineError
from lookalike.cli import main as cli
from lookalike.data.photos import load_photo

CLI = [sys.executable, "-m", "lookalike"]


def _one_line_error(err: str) -> str:
    err = err.strip()
    assert err.startswith("lookalike: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def index(tmp_path, photos):
    """A small real index of the scikit-image photos (pixels@16: fast, same code paths as any model)."""
    assert cli(["index", str(photos), "--db", str(tmp_path / "idx"), "--model", "pixels@16", "-q", "--workers", "0"]) == 0
    return tmp_path / "idx"


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout)


def test_fifo_query_is_refused_not_read(tmp_path, index):
    fifo = tmp_path / "q.jpg"
    os.mkfifo(fifo)
    r = _run(["search", str(fifo), "--db", str(index)])  # used to block forever on open()
    assert r.returncode == 2 and "not a regular file (a pipe)" in _one_line_error(r.stderr)


def test_device_query_is_refused_not_read(tmp_path, index):
    link = tmp_path / "z.png"
    link.symlink_to("/dev/zero")
    r = _run(["search", str(link), "--db", str(index)])  # used to read until memory ran out
    assert r.returncode == 2 and "not a regular file (a device)" in _one_line_error(r.stderr)


def test_oversized_queries_are_refused(tmp_path):
    from lookalike.retrieval.searcher import load_query

    with pytest.raises(EngineError, match="too large"):
        load_query(b"x" * 2048, max_bytes=1024)
    (tmp_path / "big.png").write_bytes(b"x" * 2048)
    with pytest.raises(EngineError, match="big.png: file too large"):
        load_query(tmp_path / "big.png", max_bytes=1024)


def test_replaced_file_with_old_mtime_is_embedded_again(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    a = np.asarray(load_photo("coffee").convert("RGB").resize((64, 64)))
    Image.fromarray(a).save(d / "x.bmp")
    st = os.stat(d / "x.bmp")
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    e.add([d], progress=False, workers=0, warn=None)
    old = e.search(d / "x.bmp", k=1)[0].sha256
    Image.fromarray(255 - a).save(d / "x.bmp")  # another picture, same byte size
    os.utime(d / "x.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))  # `touch -r`: the old mtime back
    assert os.stat(d / "x.bmp").st_size == st.st_size and os.stat(d / "x.bmp").st_mtime_ns == st.st_mtime_ns
    report = e.add([d], progress=False, workers=0, warn=None)
    assert report.indexed == 1 and report.unchanged == 0
    hit = e.search(d / "x.bmp", k=1)[0]
    assert hit.sha256 != old and hit.score > 0.999 and e.status().images == 1
    consistent(e)
    e.close()


def test_garbage_index_type_is_refused_and_never_saved(tmp_path, photos, capsys):
    idx = tmp_path / "idx"
    assert cli(["index", str(photos), "--db", str(idx), "--model", "pixels@16", "--index-type", "garbage", "-q"]) == 2
    assert "invalid index type 'garbage'" in _one_line_error(capsys.readouterr().err)
    assert not idx.exists()
    assert cli(["index", str(photos), "--db", str(idx), "--model", "pixels@16", "-q", "--workers", "0"]) == 0
    assert cli(["index", str(photos), "--db", str(idx), "--index-type", "garbage", "-q"]) == 2
    assert json.loads((idx / "lookalike.json").read_text())["index_type"] == "auto"
    assert cli(["status", "--db", str(idx)]) == 0


def test_untrainable_index_type_stops_before_embedding(tmp_path, photos, capsys):
    idx = tmp_path / "idx"
    code = cli(["index", str(photos), "--db", str(idx), "--model", "pixels@16", "--index-type", "IVF65536,PQ8", "-q",
                "--workers", "0"])
    err = _one_line_error(capsys.readouterr().err)
    assert code == 2 and "needs at least 256 images" in err and "auto" in err
    with Engine.open(idx) as e:
        assert e.status().images == 0 and e.config.index_type == "auto"


def test_broken_saved_index_type_names_the_fix(index, capsys):
    cfg = json.loads((index / "lookalike.json").read_text())
    cfg["index_type"] = "garbage"
    (index / "lookalike.json").write_text(json.dumps(cfg))
    assert cli(["status", "--db", str(index)]) == 2
    assert "rebuild --db" in _one_line_error(capsys.readouterr().err)
    assert cli(["rebuild", "--db", str(index), "--index-type", "auto"]) == 0
    assert cli(["status", "--db", str(index)]) == 0


def test_overlapping_roots_are_merged(tmp_path, photos, capsys):
    idx = tmp_path / "idx"
    code = cli(["index", str(photos), str(photos / "coffee.png"), str(photos) + "/", "--db", str(idx),
                "--model", "pixels@16", "-q", "--workers", "0"])
    assert code == 0, capsys.readouterr().err
    with Engine.open(idx) as e:
        assert e.status().files == len(list(photos.iterdir())) and e.store.roots() == [str(photos)]


def test_denoise_model_that_does_not_exist_is_one_line(index, photos, capsys):
    code = cli(["search", str(photos / "coffee.png"), "--db", str(index), "--denoise", "ddpm", "--denoise-model", "/nope.pt"])
    assert code == 2 and "nope.pt" in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("arr,match", [
    (np.zeros((8, 8, 5), np.uint8), r"\(H, W\) or \(H, W, 1\|3\|4\)"),
    (np.zeros((0, 0, 3), np.uint8), "invalid dimensions 0x0"),
    (np.full((4, 4), np.nan, np.float32), "NaN"),
    (np.zeros((2, 2, 2, 3), np.uint8), "shape"),
])
def test_bad_arrays_are_refused(index, arr, match):
    with Engine.open(index) as e, pytest.raises(EngineError, match=match):
        e.search(arr, k=1)


def test_empty_db_path_is_refused(photos, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(["index", str(photos), "--db", "", "-q"]) == 2
    assert "path is empty" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "lookalike.json").exists()


def test_heic_without_the_extra_is_skipped_with_the_reason(tmp_path, photos):
    from lookalike.indexer.loading import heif_missing_reason

    if heif_missing_reason("x.heic") is None:
        pytest.skip("pillow-heif is installed here")
    (photos / "phone.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 100)
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    report = e.add([photos], progress=False, workers=0, warn=None)
    assert (str(photos / "phone.HEIC"), "HEIC/AVIF needs the heif extra: pip install 'lookalike[heif]'") in report.problems
    e.close()


def test_newline_in_a_file_name_is_escaped_in_plain_output(tmp_path, photos, capsys):
    odd = photos / "two\nlines.png"
    (photos / "coffee.png").rename(odd)
    idx = tmp_path / "idx"
    assert cli(["index", str(photos), "--db", str(idx), "--model", "pixels@16", "-q", "--workers", "0"]) == 0
    capsys.readouterr()
    assert cli(["search", str(odd), "--db", str(idx), "-k", "1"]) == 0
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and out.endswith("two\\nlines.png")
    assert cli(["search", str(odd), "--db", str(idx), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["path"] == str(odd)  # JSON keeps the real name


def test_bad_model_leaves_no_index_folder(tmp_path, photos, capsys):
    idx = tmp_path / "idx"
    assert cli(["index", str(photos), "--db", str(idx), "--model", "no-such-model-xyz", "-q"]) == 2
    _one_line_error(capsys.readouterr().err)
    assert not idx.exists()


def test_non_utf8_query_name_prints_like_the_indexer(tmp_path, index, capsys):
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.png")
    with open(raw, "wb") as fh:
        fh.write(b"not an image")
    scanned = tmp_path / "scan"
    scanned.mkdir()
    os.rename(raw, os.path.join(os.fsencode(scanned), b"caf\xe9.png"))
    assert cli(["index", str(scanned), "--db", str(index), "-q", "--keep-missing"]) == 0
    capsys.readouterr()
    assert cli(["errors", "--db", str(index)]) == 0
    listed = next(ln for ln in capsys.readouterr().out.splitlines() if "caf" in ln).split(": ")[0]
    assert cli(["search", os.fsdecode(os.path.join(os.fsencode(scanned), b"caf\xe9.png")), "--db", str(index)]) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert err.split(": ")[1] == listed == f"{scanned}/caf\\xe9.png"


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return out


@pytest.mark.slow
def test_sigterm_stops_decoding_workers_and_keeps_committed_work(tmp_path):
    from lookalike.data.photos import photo_crops

    imgs = tmp_path / "imgs"
    photo_crops(imgs, 600, seed=3)
    idx = tmp_path / "idx"
    p = subprocess.Popen(CLI + ["index", str(imgs), "--db", str(idx), "--model", "pixels@16", "--workers", "2",
                                "--chunk-size", "50", "--batch-size", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    deadline = time.time() + 120
    workers: set[int] = set()
    while time.time() < deadline and len(workers) < 2 and p.poll() is None:
        workers = _children(p.pid)
        time.sleep(0.05)
    if p.poll() is not None:
        pytest.skip("the run ended before its decoding workers could be seen")
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, (p.returncode, err[-3000:])
    time.sleep(2)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]]
    assert not alive, f"decoding workers still running after SIGTERM: {alive}"
    again = _run(["index", str(imgs), "--db", str(idx), "-q"], timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]  # resumes
    with Engine.open(idx) as e:
        assert e.status().images == 600
        consistent(e)


def test_symlink_to_a_file_outside_the_roots_is_skipped_with_the_reason(tmp_path, photos):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    load_photo("moon").save(outside / "secret.png")
    (photos / "link.png").symlink_to(outside / "secret.png")
    (photos / "inside-link.png").symlink_to(photos / "coffee.png")  # inside: indexed (a duplicate path)
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    report = e.add([photos], progress=False, workers=0, warn=None)
    reasons = dict(report.problems)
    assert "outside the indexed folders" in reasons[str(photos / "link.png")]
    paths = {p for r in e.search(photos / "coffee.png", k=3) for p in r.paths}
    assert str(photos / "inside-link.png") in paths and not any("secret" in p for p in paths)
    e.close()
    with Engine.open(tmp_path / "idx2", model="pixels@16") as e2:  # indexed too when its folder is a root
        e2.add([photos, outside], progress=False, workers=0, warn=None)
        assert str(photos / "link.png") in {p for r in e2.search(outside / "secret.png", k=1) for p in r.paths}


# ---------------------------------------------------------------------------- round 3 (issue 23)
def test_image_bombs_under_the_pixel_limit_are_refused_before_decoding(tmp_path, photos):
    from helpers import png_bomb, webp_bomb

    (photos / "bomb.png").write_bytes(png_bomb(14000, 14000))            # 24 KB, 196 MP: under --max-pixels
    (photos / "bomb.webp").write_bytes(webp_bomb(14000, 14000))          # 38 bytes
    (photos / "bomb16.png").write_bytes(png_bomb(12000, 12000, 16, 0))   # 16-bit grey
    idx = tmp_path / "idx"
    e = Engine.open(idx, model="pixels@16")
    report = e.add([photos], progress=False, workers=0, warn=None)
    reasons = dict(report.problems)
    for name in ("bomb.png", "bomb.webp", "bomb16.png"):
        assert "too large to decode" in reasons[str(photos / name)] and "decode limit" in reasons[str(photos / name)]
    assert report.indexed == 10
    e.close()
    r = _run(["search", str(photos / "bomb.webp"), "--db", str(idx)])
    assert r.returncode == 2 and "bomb.webp: too large to decode: 14000x14000" in _one_line_error(r.stderr)


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_and_other_formats_are_refused():
    import io

    from lookalike.indexer.loading import ImageLoadError, decode_bytes, open_image_bytes

    photo = load_photo("astronaut").convert("RGB").resize((2400, 1600))
    jpg, png = io.BytesIO(), io.BytesIO()
    photo.save(jpg, "JPEG", quality=90)
    photo.save(png, "PNG")
    budget = 8 * 2**20  # full size needs 2400*1600*4 = 14.6 MB; half scale 3.7 MB
    assert decode_bytes("RGB", 2400, 1600) > budget >= decode_bytes("RGB", 1200, 800)
    im = open_image_bytes(jpg.getvalue(), max_decode_bytes=budget)
    assert im.size == (1200, 800) and im.info["original_size"] == (2400, 1600)
    assert open_image_bytes(jpg.getvalue()).size == (2400, 1600)  # within the default budget: full size
    with pytest.raises(ImageLoadError, match="too large to decode: 2400x1600 RGB PNG needs about 15 MB, over the 8 MB"):
        open_image_bytes(png.getvalue(), max_decode_bytes=budget)


def test_a_big_picture_within_the_budget_is_averaged_down_before_any_copy():
    from helpers import png_bomb

    from lookalike.indexer.loading import open_image_bytes

    im = open_image_bytes(png_bomb(6200, 4300, 8, 2))  # 107 MB decoded: over the 64 MB of a "big" decode
    assert im.size == (3100, 2150) and im.info["original_size"] == (6200, 4300) and im.mode == "RGB"
    assert open_image_bytes(png_bomb(4000, 3000, 8, 2)).size == (4000, 3000)  # 48 MB: as it is


def test_16_bit_pixels_convert_as_before_a_band_at_a_time():
    from lookalike.indexer.loading import to_rgb

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 65536, (1500, 900), dtype=np.uint16)  # > 1 M pixels: several bands
    im = Image.fromarray(arr)  # uint16: mode I;16
    assert im.mode == "I;16"
    expect = np.clip(arr.astype(np.float64) / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)  # the one-shot formula
    got = np.asarray(to_rgb(im))
    assert got.shape == (1500, 900, 3) and np.array_equal(got[:, :, 0], expect) and np.array_equal(got[:, :, 2], expect)


def test_a_file_rewritten_between_hashing_and_decoding_keeps_no_stale_hash(tmp_path, monkeypatch):
    import hashlib

    import lookalike.indexer.pipeline as pipeline

    d = tmp_path / "imgs"
    d.mkdir()
    old = load_photo("coffee").convert("RGB").resize((64, 64))
    new = load_photo("rocket").convert("RGB").resize((64, 64))
    old.save(d / "x.png")
    old.save(d / "y.png")  # a file of the same size: both are hashed before decoding (a lone size is hashed as decoded)
    old_sha = hashlib.sha256((d / "x.png").read_bytes()).hexdigest()
    real_hash = pipeline.sha256_file

    def hash_then_rewrite(path):  # another program saves over the file right after it was hashed
        sha = real_hash(path)
        new.save(path)
        return sha

    monkeypatch.setattr(pipeline, "sha256_file", hash_then_rewrite)
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    report = e.add([d], progress=False, workers=0, warn=None)
    assert report.indexed == 0 and "changed while it was being indexed" in dict(report.problems)[str(d / "x.png")]
    assert e.store.id_for_sha(old_sha) is None  # the old hash was not stored with the new picture's vector
    monkeypatch.setattr(pipeline, "sha256_file", real_hash)
    assert e.add([d], progress=False, workers=0, warn=None).indexed == 1  # the next run indexes what is there now
    hit = e.search(d / "x.png", k=1)[0]
    assert hit.sha256 == hashlib.sha256((d / "x.png").read_bytes()).hexdigest() and hit.score > 0.999
    e.close()


@pytest.mark.parametrize("name", ["A B", "A%20B", "q?mode=memory", "h#frag", "pct%", "x?immutable=1&mode=ro", "a&b=c;d"])
def test_db_names_with_url_characters_stay_in_their_folder(tmp_path, photos, name):
    from lookalike.indexer.store import MetadataStore, count_rows, sqlite_url

    parent = tmp_path / "X"
    parent.mkdir()
    (parent / "A B").mkdir()  # `--db 'X/A%20B'` once wrote into this one
    idx = parent / name
    assert cli(["index", str(photos), "--db", str(idx), "--model", "pixels@16", "-q", "--workers", "0"]) == 0
    assert sorted(p.name for p in parent.iterdir()) == sorted({"A B", name})
    assert (idx / "metadata.db").stat().st_size > 0 and count_rows(idx / "metadata.db") == 10
    if name != "A B":
        assert list((parent / "A B").iterdir()) == []
    ro = MetadataStore(sqlite_url(idx / "metadata.db"), read_only=True)  # the read-only open names the same file
    assert ro.counts()["images"] == 10
    ro.close()
    with Engine.open(idx) as e:
        assert e.search(photos / "coffee.png", k=1)[0].path == str(photos / "coffee.png")


def _sha_of(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _drop(db: Path, *sql: str) -> None:
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("PRAGMA foreign_keys=OFF")
    for q in sql:
        con.execute(q)
    con.commit()
    con.close()


def test_a_dropped_images_table_is_reported_and_nothing_is_written(index, photos):
    import sqlite3

    _drop(index / "metadata.db", "DROP TABLE images")
    before = {n: _sha_of(index / n) for n in ("metadata.db", "vectors.faiss", "lookalike.json")}
    for args in (["search", str(photos / "coffee.png")], ["status"], ["index", str(photos)], ["rebuild"]):
        r = _run([*args, "--db", str(index)])
        err = _one_line_error(r.stderr)
        assert r.returncode == 2 and "has lost its table images; it was left untouched" in err, (args, err)
        if args[0] == "rebuild":  # says what it can and cannot recover, and where the folders were
            assert "'lookalike rebuild' cannot restore it" in err and str(photos) in err
    assert {n: _sha_of(index / n) for n in before} == before  # a read never wrote; the vectors were never replaced
    con = sqlite3.connect(index / "metadata.db")
    assert "images" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()


def test_a_lost_skipped_table_is_recreated_by_rebuild_only(index, photos):
    _drop(index / "metadata.db", "DROP TABLE skipped")
    r = _run(["status", "--db", str(index)])
    assert r.returncode == 2 and "lost its table skipped" in _one_line_error(r.stderr) and "lookalike rebuild" in r.stderr
    r = _run(["rebuild", "--db", str(index)])
    assert r.returncode == 0, r.stderr
    with Engine.open(index) as e:
        assert e.status().images == 10 and e.errors() == []


def test_an_index_run_never_saves_an_empty_index_over_vectors_the_rows_still_name(index, photos, capsys):
    _drop(index / "metadata.db", "DELETE FROM images")  # the files rows are left pointing at nothing
    before = _sha_of(index / "vectors.faiss")
    assert cli(["index", str(photos), "--db", str(index), "-q", "--workers", "0"]) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "lists 10 files but no images" in err and "(10 vectors) was kept" in err
    assert _sha_of(index / "vectors.faiss") == before


@pytest.mark.slow
def test_two_first_runs_creating_one_index_with_different_models_leave_it_whole(tmp_path, photos):
    idx = tmp_path / "idx"
    procs = [subprocess.Popen(CLI + ["index", str(photos), "--db", str(idx), "--model", m, "-q", "--workers", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for m in ("pixels@16", "pixels@32")]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes[0] == 0, outs  # one of them built it
    for p, (_, err) in zip(procs, outs):
        if p.returncode:  # the other was refused in one line: a writer holds it, or it is the other model's index
            assert p.returncode == 2 and ("another lookalike process" in err or "built with model" in err), err
    with Engine.open(idx) as e:
        st = e.status()
        assert st.images == 10 and st.vectors == 10 and st.dim == e.embedder.dim
        consistent(e)
    assert _run(["rebuild", "--db", str(idx)]).returncode == 0


def test_a_faiss_file_restored_from_a_backup_or_another_index_is_not_trusted(tmp_path, photos, capsys):
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    for p in sorted(photos.iterdir()):  # another collection of 10: the same ids 1..10, other vectors
        Image.open(p).convert("RGB").transpose(Image.Transpose.ROTATE_180).save(flipped / p.name)
    for idx, src in ((a, photos), (b, flipped)):
        assert cli(["index", str(src), "--db", str(idx), "--model", "pixels@16", "-q", "--workers", "0"]) == 0
    backup = tmp_path / "backup.faiss"
    shutil.copy(a / "vectors.faiss", backup)
    shutil.copy(b / "vectors.faiss", a / "vectors.faiss")  # copied from another index
    capsys.readouterr()
    with Engine.open(a) as e:
        hit = e.search(photos / "coffee.png", k=1)[0]
        assert hit.path == str(photos / "coffee.png") and hit.score > 0.999
    assert "not written with this index's database" in capsys.readouterr().err
    # a backup of this very index, from before a change: the newest image reused the id of a removed one
    assert cli(["index", str(photos), "--db", str(a), "-q", "--workers", "0"]) == 0  # writes a fresh file
    shutil.copy(a / "vectors.faiss", backup)
    with Engine.open(a) as e:
        last = max(e.store.image_ids())
        gone = e.image(int(last)).paths[0]
    os.unlink(gone)
    assert cli(["index", str(photos), "--db", str(a), "-q", "--workers", "0"]) == 0  # forgets it
    Image.open(flipped / "moon.png").save(photos / "new.png")
    assert cli(["index", str(photos), "--db", str(a), "-q", "--workers", "0"]) == 0
    with Engine.open(a) as e:
        assert e.store.id_for_path(str(photos / "new.png")) == last  # SQLite reused the id
    shutil.copy(backup, a / "vectors.faiss")
    capsys.readouterr()
    with Engine.open(a) as e:
        hit = e.search(photos / "new.png", k=1)[0]
        assert hit.path == str(photos / "new.png") and hit.score > 0.999
        consistent(e)
    assert "restored from a backup" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("where", ["a file", "below a file", "XDG file", "read-only"])
def test_an_unusable_model_cache_falls_back_with_one_note(tmp_path, index, photos, where):
    import contextlib

    from helpers import read_only

    f = tmp_path / "cachefile"
    f.write_text("not a folder")
    env = {k: v for k, v in os.environ.items() if k not in ("LOOKALIKE_CACHE", "XDG_CACHE_HOME")}
    ro_folder = tmp_path / "ro-cache"
    ro_folder.mkdir()
    (ro_folder / "keep").write_text("x")
    with read_only(ro_folder) if where == "read-only" else contextlib.nullcontext(None) as ro:
        if where == "a file":
            env["LOOKALIKE_CACHE"] = str(f)
        elif where == "below a file":
            env["LOOKALIKE_CACHE"] = str(f / "models")
        elif where == "XDG file":
            env["XDG_CACHE_HOME"] = str(f)
        else:
            env["LOOKALIKE_CACHE"] = str(ro)
        r = subprocess.run(CLI + ["search", str(photos / "coffee.png"), "--db", str(index), "-k", "1"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and str(photos / "coffee.png") in r.stdout, r.stderr
    notes = [line for line in r.stderr.splitlines() if "model cache folder unusable" in line]
    assert len(notes) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f.read_text() == "not a folder"


def test_infinite_sizes_are_one_line(tmp_path, photos):
    for v in ("inf", "1e400", "nan", "-inf"):
        r = _run(["index", str(photos), "--db", str(tmp_path / "idx"), "--max-memory", v])
        assert r.returncode == 2 and "--max-memory" in _one_line_error(r.stderr), r.stderr
    assert not (tmp_path / "idx").exists()


def test_an_unwritable_export_folder_is_one_line(tmp_path):
    from helpers import have_samples

    if not have_samples():
        pytest.skip("the MNIST sample is not on disk")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _run(["data", "export", "mnist", str(blocker / "out"), "--limit", "2", "-q"])
    assert r.returncode == 2 and str(blocker) in _one_line_error(r.stderr), r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("key, value", [
    ("search", "fast"),
    ("search", {"ef_search": "abc", "nprobe": None, "refine_factor": None, "recall_at_k": 0.9, "reached": True,
                "queries": 10, "vectors": 10, "target": 0.95, "factory": "Flat"}),
    ("search", {"ef_search": 64, "nprobe": -3, "factory": "Flat"}),
    ("max_memory", "abc"), ("max_memory", -5), ("on_disk", "yes"), ("recall_target", 7), ("factory", 12),
    ("preprocess", [1, 2]),
])
def test_bad_tuned_knobs_in_the_config_fall_back_with_a_note(index, photos, key, value):
    cfg = json.loads((index / "lookalike.json").read_text())
    cfg[key] = value
    (index / "lookalike.json").write_text(json.dumps(cfg))
    for args in (["search", str(photos / "coffee.png"), "-k", "1"], ["status"]):
        r = _run([*args, "--db", str(index)])
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert f"invalid setting '{key}'" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _run(["index", str(photos), "--db", str(index), "-q"]).returncode == 0  # writes valid settings
    r = _run(["status", "--db", str(index)])
    assert r.returncode == 0 and r.stderr == ""


def test_a_damaged_vector_blob_is_one_line_and_rebuild_embeds_it_again(index, photos):
    import sqlite3

    with Engine.open(index) as e:
        coffee = e.store.id_for_path(str(photos / "coffee.png"))
        moon = e.store.id_for_path(str(photos / "moon.png"))
        good = dict(zip(*e.vectors()))[coffee].copy()
    con = sqlite3.connect(index / "metadata.db")
    con.execute("UPDATE images SET vector = x'0102030405' WHERE id = ?", (coffee,))
    con.execute("UPDATE images SET vector = zeroblob(12) WHERE id = ?", (moon,))
    con.commit()
    con.close()
    os.unlink(photos / "moon.png")  # no file holds the moon any more
    r = _run(["duplicates", "--db", str(index)])
    err = _one_line_error(r.stderr)
    assert r.returncode == 2 and f"the stored vector of image {coffee} ({photos / 'coffee.png'})" in err and "rebuild" in err
    r = _run(["rebuild", "--db", str(index), "--json"])
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout)
    assert done["reembedded"] == 1 and done["removed"] == [str(photos / "moon.png")] and done["vectors"] == 9
    with Engine.open(index) as e:
        assert np.allclose(dict(zip(*e.vectors()))[coffee], good, atol=1e-5)  # the same vector as indexing gave
        assert e.store.damaged_vectors() == [] and e.status().images == 9
        consistent(e)
    assert _run(["duplicates", "--db", str(index)]).returncode == 0


def test_skipped_files_are_retried_when_the_limit_changes_or_on_request(tmp_path, photos, capsys):
    idx = str(tmp_path / "idx")
    assert cli(["index", str(photos), "--db", idx, "--model", "pixels@16", "-q", "--workers", "0",
                "--max-pixels", "250000"]) == 0
    with Engine.open(idx) as e:
        too_big = {p for p, r in e.errors() if "exceeds the limit of 250,000" in r}
    assert len(too_big) >= 2  # e.g. astronaut (512x512)
    assert cli(["index", str(photos), "--db", idx, "-q", "--workers", "0"]) == 0  # the default limit: tried again
    with Engine.open(idx) as e:
        assert e.errors() == [] and e.status().images == 10
    # a damaged file fixed in place with its old size and time (restored from a backup): only --retry-skipped sees it
    good = (photos / "coins.png").read_bytes()
    st = os.stat(photos / "coins.png")
    (photos / "coins.png").write_bytes(b"x" * len(good))  # not an image any more, same size
    os.utime(photos / "coins.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert cli(["index", str(photos), "--db", idx, "-q", "--workers", "0"]) == 0
    (photos / "coins.png").write_bytes(good)
    os.utime(photos / "coins.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    capsys.readouterr()
    assert cli(["index", str(photos), "--db", idx, "-q", "--workers", "0"]) == 0
    assert "indexed 0," in capsys.readouterr().out  # looks unchanged: not retried
    assert cli(["index", str(photos), "--db", idx, "-q", "--workers", "0", "--retry-skipped"]) == 0
    assert "indexed 1," in capsys.readouterr().out
    with Engine.open(idx) as e:
        assert e.errors() == [] and e.search(photos / "coins.png", k=1)[0].path == str(photos / "coins.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_a_file_unreadable_then_made_readable_is_retried(tmp_path, photos):
    os.chmod(photos / "moon.png", 0)
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    assert dict(e.add([photos], progress=False, workers=0, warn=None).problems)[str(photos / "moon.png")] == "permission denied"
    os.chmod(photos / "moon.png", 0o644)  # the mode changes, not the size or the mtime
    assert e.add([photos], progress=False, workers=0, warn=None).indexed == 1
    e.close()


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[: len(b) // 2], "the file is cut short"),
    (lambda b: b"", "the file is empty"),
    (lambda b: os.urandom(600), "not a FAISS index (unknown header)"),
    (lambda b: b[:4] + os.urandom(300), "not a valid FAISS index"),
])
def test_damaged_faiss_files_are_described_in_words(index, photos, damage, words):
    f = index / "vectors.faiss"
    f.write_bytes(damage(f.read_bytes()))
    r = _run(["search", str(photos / "coffee.png"), "--db", str(index)])
    err = _one_line_error(r.stderr)
    assert r.returncode == 2 and words in err and f"lookalike rebuild --db {index}" in err, err
    assert "index_read.cpp" not in err and "Error in" not in err and "ret ==" not in err


def test_workers_are_capped_at_the_cores_and_the_work(tmp_path, photos, monkeypatch):
    import lookalike.indexer.decoding as decoding

    seen = []
    real = decoding._pool

    def counting(workers):  # the real pool; only the number of processes asked for is noted
        seen.append(workers)
        return real(workers)

    monkeypatch.setattr(decoding, "_pool", counting)
    two = tmp_path / "two"
    two.mkdir()
    shutil_copy = __import__("shutil").copy
    shutil_copy(photos / "coffee.png", two / "coffee.png")
    shutil_copy(photos / "chelsea.png", two / "chelsea.png")
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    assert e.add([two], progress=False, workers=1000, warn=None).indexed == 2
    e.close()
    assert seen == [2]  # two images: two decoding processes, not 1000


def test_status_shows_a_normalised_folder_and_a_missing_query_name_is_escaped(tmp_path, index, capsys):
    sub = index.parent / "sub"
    sub.mkdir()
    assert cli(["status", "--db", str(sub / ".." / index.name), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(index)
    assert cli(["search", str(tmp_path / "gone\n"), "--db", str(index)]) == 2
    assert capsys.readouterr().err == f"lookalike: {tmp_path / 'gone'}\\n: query image not found\n"


def test_a_big_picture_with_alpha_is_reduced_before_it_is_composited():
    from helpers import png_bomb

    from lookalike.indexer.loading import decode_bytes, open_image_bytes

    # 9000x6000 RGBA: 216 MB of pixels; composited at full size it would need ~1 GB, halved first ~490 MB
    assert decode_bytes("RGBA", 9000, 6000) > 512 * 2**20 > decode_bytes("RGBA", 9000, 6000, reduced=True)
    im = open_image_bytes(png_bomb(9000, 6000, 8, 6))
    assert im.size == (4500, 3000) and im.mode == "RGB" and im.getpixel((10, 10)) == (255, 255, 255)  # transparent
