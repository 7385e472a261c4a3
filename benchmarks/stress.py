"""Fault and concurrency stress: random SIGKILLs + resume vs a clean run, a searcher process running throughout,
and a catalogue of bad inputs (damaged/missing files, read-only folder, full disk, a second writer, bad images).

    nice -n 10 .venv/bin/python -m benchmarks.stress --n 600 --kills 20 --out /tmp/stress.json

    .venv/bin/python -m benchmarks.stress --bombs 8 --out /tmp/bombs.json   # image bombs only (issue 23)

``--bombs N``: peak memory (RSS, and PSS: the sum over the process and its decoding workers counting shared pages
once; sampled every 20 ms) of ``lookalike index``
over N image bombs under the pixel limit, and of ``lookalike serve`` while N bomb uploads arrive at once, then its
RSS once they are answered. Target: both peaks <= 1.5 GB, and the server's memory handed back.

Pass criteria: after the last resume the killed index holds exactly what a clean run holds (same path -> sha256
map, same sha256 set with bit-identical vectors, no duplicate rows, no orphans, FAISS ids == database ids, no
temp files left); every search served by the searcher process returned only ids that have a row and a file; every
bad input gave a one-line "lookalike: ..." error (no traceback) or a clean skip, and lost nothing committed.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from lookalike.data.photos import photo_crops
from lookalike.indexer.store import count_rows

PY = sys.executable


def index_cmd(imgs: Path, idx: Path, model: str) -> list[str]:
    return [PY, "-m", "lookalike", "index", str(imgs), "--db", str(idx), "--model", model, "-q",
            "--batch-size", "8", "--chunk-size", "16", "--workers", "1"]


def db_count(db) -> int:
    return count_rows(db, "images")


def snapshot(idx: Path) -> dict:
    """Contents plus the invariants: no duplicate content, no orphans, FAISS ids == database ids."""
    from lookalike import Engine

    e = Engine.open(idx, create=False)
    try:
        con = sqlite3.connect(idx / "metadata.db")
        paths = dict(con.execute("select f.path, i.sha256 from files f join images i on i.id = f.image_id"))
        vecs = dict(con.execute("select sha256, vector from images"))
        shas = [r[0] for r in con.execute("select sha256 from images")]
        db_ids = {r[0] for r in con.execute("select id from images")}
        orphans = con.execute("select count(*) from files where image_id not in (select id from images)").fetchone()[0]
        empty = con.execute("select count(*) from images where id not in (select image_id from files)").fetchone()[0]
        con.close()
        problems = []
        if len(shas) != len(set(shas)):
            problems.append("duplicate content rows")
        if orphans or empty:
            problems.append(f"{orphans} files without image, {empty} images without file")
        faiss_ids = set(int(i) for i in e.index.visible_ids()) if e.index is not None else set()
        if faiss_ids != db_ids or (e.index is not None and e.index.ntotal != len(db_ids)):
            problems.append(f"FAISS/database disagree: {len(faiss_ids ^ db_ids)} ids")
        tmp = [p.name for p in idx.glob(".*.tmp")]
        if tmp:
            problems.append(f"temp files left: {tmp}")
    finally:
        e.close()
    return {"paths": paths, "vectors": vecs, "problems": problems}


# ------------------------------------------------------------------------------------------ searcher process
def searcher(idx: Path, stop: Path, out: Path) -> int:
    """Search the index while it is written: fresh snapshot every round, every result id must have its row."""
    from lookalike import Engine, EngineError

    rng = np.random.default_rng(os.getpid())
    served = rounds = not_ready = 0
    violations: list[str] = []
    errors: list[str] = []
    while not stop.exists():
        try:
            e = Engine.open(idx, create=False)
        except EngineError as exc:
            not_ready += 1
            if "not a lookalike index" not in str(exc) and len(errors) < 20:
                errors.append(f"open: {exc}")
            time.sleep(0.05)
            continue
        except Exception as exc:  # anything else is a failure of the snapshot guarantee
            errors.append(f"open: {type(exc).__name__}: {exc}")
            time.sleep(0.05)
            continue
        rounds += 1
        try:
            if e.index is None or len(e.index) == 0:
                not_ready += 1
                time.sleep(0.02)
                continue
            for _ in range(10):
                q = rng.standard_normal(e.dim).astype(np.float32)
                _, ids = e.index.search(q / np.linalg.norm(q), 10)
                ids = [int(i) for i in ids[0] if i >= 0]
                rows = e.store.lookup(ids)
                missing = set(ids) - set(rows)
                if missing:
                    violations.append(f"vector without row: {sorted(missing)[:5]}")
                if any(not rows[i].paths for i in ids if i in rows):
                    violations.append("row without file")
                served += 1
        except Exception as exc:
            errors.append(f"search: {type(exc).__name__}: {exc}")
        finally:
            e.close()
    out.write_text(json.dumps({"searches": served, "snapshots": rounds, "not_ready": not_ready,
                               "violations": violations[:20], "n_violations": len(violations),
                               "errors": errors[:20], "n_errors": len(errors)}))
    return 0


# ------------------------------------------------------------------------------------------ kills
def _writer_active(idx: Path) -> bool:
    """Whether a process holds the index's writer lock: read from /proc/locks, never by taking the lock."""
    try:
        ino = os.stat(idx / ".lock").st_ino
        with open("/proc/locks") as fh:
            return any(line.split()[5].endswith(f":{ino}") for line in fh if len(line.split()) > 5)
    except OSError:
        return False


def timed_clean_run(imgs: Path, idx: Path, model: str) -> dict:
    """A clean run, watched: when it takes the writer lock, commits its first chunk, and ends."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(index_cmd(imgs, idx, model), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t_lock = t_first = None
    while proc.poll() is None:
        now = time.perf_counter() - t0
        if t_lock is None and _writer_active(idx):
            t_lock = now
        if t_first is None and db_count(idx / "metadata.db") > 0:
            t_first = now
        time.sleep(0.01)
    t_end = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr.read().decode()[-2000:])
    t_lock = t_lock if t_lock is not None else 0.0
    t_first = t_first if t_first is not None else t_lock
    return {"start_s": round(t_lock, 1), "lock_to_first_commit_s": round(t_first - t_lock, 1),
            "embed_commit_s": round(t_end - t_first, 1), "total_s": round(t_end, 1)}


def kill_loop(imgs: Path, idx: Path, model: str, kills: int, timing: dict, n: int, rng) -> dict:
    """SIGKILL at ``kills`` random moments, resuming each time: 20% at a random time during start-up, 20% at a
    random time between taking the writer lock and the first commit (sync, scan, hash, link), 60% once a random
    number of images (uniform over the collection, sorted) is committed, plus a random 0-0.3 s (mid-chunk,
    mid-commit or mid-save)."""
    plan = []
    for _ in range(kills):
        u = rng.random()
        plan.append(("start-up", None) if u < 0.2 else ("sync/scan/hash", None) if u < 0.4 else ("embed/commit/save", None))
    targets = iter(sorted(int(t) for t in rng.integers(1, n, sum(p[0] == "embed/commit/save" for p in plan))))
    plan = [(p, next(targets) if p == "embed/commit/save" else None) for p, _ in plan]
    # start-up and scan kills first would not advance the run; interleave them with the progress kills
    order = sorted(range(kills), key=lambda i: (plan[i][1] if plan[i][1] is not None else rng.integers(0, n)))
    landed, finished_early, counts, phases = 0, 0, [], []
    for i in order:
        phase, target = plan[i]
        proc = subprocess.Popen(index_cmd(imgs, idx, model), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if phase == "start-up":
            delay = float(rng.uniform(0, timing["start_s"]))
        else:
            t_end = time.time() + 600
            while proc.poll() is None and not _writer_active(idx) and time.time() < t_end:
                time.sleep(0.005)
            if phase == "sync/scan/hash":
                delay = float(rng.uniform(0, timing["lock_to_first_commit_s"]))
            else:
                while proc.poll() is None and db_count(idx / "metadata.db") < target and time.time() < t_end:
                    time.sleep(0.005)
                delay = float(rng.uniform(0, 0.3))
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            landed += 1
            counts.append(db_count(idx / "metadata.db"))
            phases.append(phase)
        else:
            finished_early += 1
            if proc.returncode != 0:
                return {"error": proc.stderr.read().decode()[-2000:]}
    return {"kills": landed, "runs": kills, "runs_finished_before_kill": finished_early, "committed_at_kills": counts,
            "kill_phases": {p: phases.count(p) for p in sorted(set(phases))}}


# ------------------------------------------------------------------------------------------ bad inputs
def _cli(*args) -> tuple[int, str, str]:
    from lookalike.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    return rc, out.getvalue(), err.getvalue()


def _one_line(rc: int, err: str, *needles: str) -> bool:
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return rc != 0 and "Traceback" not in err and last.startswith("lookalike: ") and any(n in last for n in needles)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def bad_inputs(work: Path, imgs: Path, clean: Path, model: str) -> list[dict]:
    results = []

    def record(name: str, ok: bool, detail: str) -> None:
        results.append({"input": name, "ok": bool(ok), "detail": detail.strip().splitlines()[-1][:200] if detail.strip() else ""})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)

    base = snapshot(clean)
    query = str(sorted(imgs.iterdir())[5])

    def fresh(name: str) -> Path:
        d = work / "bad" / name
        shutil.copytree(clean, d)
        return d

    # damaged / missing FAISS file: reported at open, 'rebuild' restores it from the stored vectors
    for kind in ("truncated", "random bytes", "zero length", "missing"):
        d = fresh(f"faiss-{kind.replace(' ', '-')}")
        f = d / "vectors.faiss"
        if kind == "truncated":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        elif kind == "random bytes":
            f.write_bytes(os.urandom(f.stat().st_size))
        elif kind == "zero length":
            f.write_bytes(b"")
        else:
            f.unlink()
        rc, _, err = _cli("search", query, "--db", str(d))
        ok = _one_line(rc, err, "lookalike rebuild")
        rc2, _, err2 = _cli("rebuild", "--db", str(d))
        after = snapshot(d)
        ok = ok and rc2 == 0 and after["vectors"] == base["vectors"] and not after["problems"]
        rc3, out3, _ = _cli("search", query, "--db", str(d), "-k", "1")
        record(f"FAISS file {kind}", ok and rc3 == 0 and query in out3, err)

    # damaged / missing database: reported, never modified
    for kind in ("pages overwritten", "header overwritten", "zero length", "missing"):
        d = fresh(f"db-{kind.replace(' ', '-')}")
        db = d / "metadata.db"
        if kind == "pages overwritten":
            data = bytearray(db.read_bytes())
            data[4096 : 4096 * 4] = os.urandom(4096 * 3)
            db.write_bytes(bytes(data))
        elif kind == "header overwritten":
            with open(db, "r+b") as fh:
                fh.write(b"not a database" * 4)
        elif kind == "zero length":
            db.write_bytes(b"")
        else:
            db.unlink()
        before = _sha(db) if db.exists() else None
        rc, _, err = _cli("search", query, "--db", str(d))
        rc2, _, err2 = _cli("index", str(imgs), "--db", str(d), "-q", "--workers", "0")
        wal = d / "metadata.db-wal"
        untouched = (_sha(db) if db.exists() else None) == before and (not wal.exists() or wal.stat().st_size == 0)
        record(f"database {kind}", _one_line(rc, err, "corrupted", "missing", "empty")
               and _one_line(rc2, err2, "corrupted", "missing", "empty") and untouched, err)

    # damaged configuration
    d = fresh("config")
    (d / "lookalike.json").write_text("{not json")
    rc, _, err = _cli("search", query, "--db", str(d))
    record("lookalike.json not JSON", _one_line(rc, err, "unreadable index configuration"), err)

    # wrong model for an existing index
    d = fresh("model")
    rc, _, err = _cli("index", str(imgs), "--db", str(d), "--model", "pixels-gray" if model != "pixels-gray" else "pixels", "-q")
    record("another model on an existing index", _one_line(rc, err, "was built with model"), err)

    # a second writer while one is running
    for attempt in range(3):  # a small collection can be indexed before the second writer starts: try again
        d = work / "bad" / f"second-writer-{attempt}"
        p = subprocess.Popen(index_cmd(imgs, d, model), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_end = time.time() + 120
        while db_count(d / "metadata.db") == 0 and time.time() < t_end and p.poll() is None:
            time.sleep(0.01)
        rc, _, err = _cli("index", str(imgs), "--db", str(d), "-q", "--workers", "0")
        running = p.poll() is None
        p.wait()
        if running or rc != 0:
            break
    record("second writer during indexing", running and _one_line(rc, err, "another lookalike process is writing")
           and p.returncode == 0 and not snapshot(d)["problems"], err)

    # bad image files among good ones: skipped with a reason, the run completes
    d = work / "bad" / "bad-images"
    src = d / "imgs"
    src.mkdir(parents=True)
    for f in sorted(imgs.iterdir())[:10]:
        shutil.copy(f, src / f.name)
    (src / "zero.jpg").write_bytes(b"")
    (src / "truncated.jpg").write_bytes((imgs / sorted(os.listdir(imgs))[0]).read_bytes()[:300])
    (src / "text.png").write_text("hello, I am not a PNG")
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    (src / "bomb.png").write_bytes(bomb)
    rc, out, err = _cli("index", str(src), "--db", str(d / "idx"), "--model", model, "-q", "--workers", "0")
    errs = _cli("errors", "--db", str(d / "idx"))[1]
    record("bad images (zero-length, truncated, text, 3.6-gigapixel header)",
           rc == 0 and "indexed 10" in out and "skipped 4" in out and all(x in errs for x in ("zero.jpg", "truncated.jpg", "text.png", "bomb.png")), out)

    # issue 14: hostile queries, arguments and folders (each also a test in tests/test_hostile.py)
    d = fresh("hostile")
    fifo = work / "bad" / "q.jpg"
    os.mkfifo(fifo)
    for name, q, needle in (("query is a FIFO", fifo, "not a regular file (a pipe)"),
                            ("query is /dev/zero", Path("/dev/zero"), "not a regular file (a device)")):
        t0 = time.perf_counter()
        r = subprocess.run([PY, "-m", "lookalike", "search", str(q), "--db", str(d)], capture_output=True, text=True,
                           timeout=60)
        record(name, _one_line(r.returncode, r.stderr, needle) and time.perf_counter() - t0 < 30, r.stderr)
    for name, args, needle in (
            ("--index-type garbage", ["index", str(imgs), "--db", str(work / "bad" / "garbage"), "--index-type", "garbage"],
             "invalid index type"),
            ("--index-type IVF65536,PQ8 on a small folder", ["index", str(src), "--db", str(work / "bad" / "pq"),
                                                             "--model", model, "--index-type", "IVF65536,PQ8"], "needs at least"),
            ("--db ''", ["index", str(imgs), "--db", ""], "path is empty"),
            ("unknown --model", ["index", str(imgs), "--db", str(work / "bad" / "nomodel"), "--model", "no-such-model"],
             "no-such-model"),
            ("--denoise-model that does not exist", ["search", query, "--db", str(d), "--denoise", "ddpm",
                                                     "--denoise-model", "/nope.pt"], "nope.pt")):
        rc, _, err = _cli(*args, "-q") if args[0] == "index" else _cli(*args)
        left = [p for p in (work / "bad" / "garbage", work / "bad" / "nomodel") if p.exists()]
        record(name, _one_line(rc, err, needle) and not left, err)
    for text in ("{}", "[]"):
        c = fresh(f"config-{len(text)}-{text[0] == '{'}")
        (c / "lookalike.json").write_text(text)
        ok = all(_one_line(*_cli(*a)[::2], "lookalike.json") for a in (["status", "--db", str(c)], ["search", query, "--db", str(c)]))
        record(f"lookalike.json is {text}", ok, "")
    mixed = work / "bad" / "mixed"
    shutil.copytree(src, mixed)
    from PIL import Image, ImageOps

    ImageOps.mirror(Image.open(query).convert("RGB")).save(mixed / "two\nlines.png")  # new content
    (mixed / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)
    outside = work / "bad" / "outside.png"
    shutil.copy(query, outside)
    (mixed / "link.png").symlink_to(outside)
    rc, out, err = _cli("index", str(mixed), str(mixed / "zero.jpg"), "--db", str(work / "bad" / "mixed-idx"), "--model",
                        model, "-q", "--workers", "0")
    errs = _cli("errors", "--db", str(work / "bad" / "mixed-idx"))[1]
    rc2, out2, _ = _cli("search", str(mixed / "two\nlines.png"), "--db", str(work / "bad" / "mixed-idx"), "-k", "2")
    record("overlapping roots, a newline in a name, HEIC without the extra, a symlink leaving the folder",
           rc == 0 and "heif" in errs and "outside the indexed folders" in errs and rc2 == 0
           and len([ln for ln in out2.splitlines() if ln.strip()[:1].isdigit()]) == 2  # the hits (a note may lead)
           and "two\\nlines.png" in out2, err or out)
    swap = work / "bad" / "swap"
    swap.mkdir()
    arr = np.asarray(Image.open(query).convert("RGB"))
    Image.fromarray(arr).save(swap / "x.bmp")
    st0 = os.stat(swap / "x.bmp")
    _cli("index", str(swap), "--db", str(swap / "idx"), "--model", model, "-q", "--workers", "0")
    Image.fromarray(255 - arr).save(swap / "x.bmp")
    os.utime(swap / "x.bmp", ns=(st0.st_atime_ns, st0.st_mtime_ns))
    rc, out, err = _cli("index", str(swap), "--db", str(swap / "idx"), "-q", "--workers", "0")
    record("file replaced, same size, old mtime restored (touch -r)", rc == 0 and "indexed 1" in out, out)

    # read-only folder and full disk need mounts (root)
    if os.geteuid() == 0:
        d = fresh("read-only")
        view = work / "bad" / "read-only-view"
        view.mkdir()
        if subprocess.run(["mount", "--bind", str(d), str(view)]).returncode == 0:
            try:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
                rc, _, err = _cli("index", str(imgs), "--db", str(view), "-q", "--workers", "0")
                rc2, out2, _ = _cli("search", query, "--db", str(view), "-k", "1")
                record("read-only index folder (index; search still works)",
                       _one_line(rc, err, "Read-only file system") and rc2 == 0 and query in out2, err)
            finally:
                subprocess.run(["umount", str(view)])
            record("read-only: committed data intact", snapshot(d)["vectors"] == base["vectors"], "")
        # a writer killed with commits still in the write-ahead log, then the folder mounted read-only
        d = work / "bad" / "killed-ro"
        p = subprocess.Popen(index_cmd(imgs, d, model), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_end = time.time() + 120
        while db_count(d / "metadata.db") < 32 and time.time() < t_end and p.poll() is None:
            time.sleep(0.01)
        p.kill()
        p.wait()
        committed = db_count(d / "metadata.db")
        view = work / "bad" / "killed-ro-view"
        view.mkdir()
        if subprocess.run(["mount", "--bind", str(d), str(view)]).returncode == 0:
            try:
                subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
                rc, out, err = _cli("status", "--db", str(view), "--json")
                seen = json.loads(out)["images"] if rc == 0 else -1
                record("killed writer, then read-only mount: every committed row seen (or a one-line reason)",
                       seen == committed or _one_line(rc, err, "not closed cleanly"), f"{seen} of {committed} {err}")
            finally:
                subprocess.run(["umount", str(view)])
        mnt = work / "bad" / "tiny"
        mnt.mkdir()
        size = int(sum(f.stat().st_size for f in clean.iterdir()) * 3 + 8 * 2**20)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]).returncode == 0:
            try:
                half = work / "bad" / "half"
                half.mkdir()
                for f in sorted(imgs.iterdir())[: len(os.listdir(imgs)) // 4]:
                    shutil.copy(f, half / f.name)
                idx = mnt / "idx"
                assert _cli("index", str(half), "--db", str(idx), "--model", model, "-q", "--workers", "0")[0] == 0
                before = snapshot(idx)
                st = os.statvfs(mnt)
                (mnt / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 256 * 1024))
                rc, _, err = _cli("index", str(imgs), "--db", str(idx), "-q", "--workers", "0")
                ok = _one_line(rc, err, "No space left on device", "disk is full")
                (mnt / "filler").unlink()
                after = snapshot(idx)
                ok2 = set(before["vectors"]) <= set(after["vectors"]) and not after["problems"]
                rc3 = _cli("index", str(imgs), "--db", str(idx), "-q", "--workers", "0")[0]
                record("disk full (tmpfs) during indexing", ok and ok2 and rc3 == 0 and not snapshot(idx)["problems"], err)
            finally:
                subprocess.run(["umount", "-l", str(mnt)])
    else:
        record("read-only folder / disk full", False, "skipped: needs root for mounts (see tests/test_faults.py)")
    return results


# ------------------------------------------------------------------------------------------ image bombs (issue 23)
def _tree_rss(pid: int, field: str = "Rss") -> int:
    """Resident bytes of a process and all its descendants (0 once it is gone); ``field="Pss"`` counts pages
    shared between them (forked decoding workers share the parent's) once, split among the sharers."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


class _PeakRSS:
    """Samples a process tree's RSS every 20 ms in a thread; ``peak`` is the largest sum seen."""

    def __init__(self, pid: int, field: str = "Rss") -> None:
        import threading

        self.pid, self.field, self.peak, self._stop = pid, field, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(self.pid, self.field))
            self._stop.wait(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def make_bombs(folder: Path, n: int) -> list[Path]:
    """``n`` image bombs under the 200 MP pixel limit, a few KB each: refused ones (more than the decode budget) and
    ones that decode within it (a 16-bit PNG, a 100 MP RGB PNG, a 144 MP JPEG decoded at a reduced scale)."""
    from tests.helpers import png_bomb, webp_bomb
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)

    def big_jpeg() -> bytes:
        buf = io.BytesIO()
        Image.new("L", (12000, 12000), 128).save(buf, "JPEG", quality=50)  # 144 MB while written, then freed
        return buf.getvalue()

    kinds = [("png1.png", lambda: png_bomb(14000, 14000)), ("webp.webp", lambda: webp_bomb(14000, 14000)),
             ("png16.png", lambda: png_bomb(7000, 7000, 16, 0)), ("rgb.png", lambda: png_bomb(10000, 10000, 8, 2)),
             ("big.jpg", big_jpeg), ("rgba.png", lambda: png_bomb(14000, 14000, 8, 6)),
             ("pal.png", lambda: png_bomb(14000, 14000, 8, 3)), ("grey16.png", lambda: png_bomb(12000, 12000, 16, 0))]
    made = {}
    out = []
    for i in range(n):
        name, make = kinds[i % len(kinds)]
        if name not in made:
            made[name] = make()
        p = folder / f"{i:02d}-{name}"
        p.write_bytes(made[name])
        out.append(p)
    return out


def bomb_memory(work: Path, model: str, n: int) -> dict:
    """Peak RSS of `lookalike index` over n bombs and of `lookalike serve` with n bomb uploads at once."""
    import concurrent.futures
    import socket as socket_

    import httpx

    bombs = make_bombs(work / "bombs", n)
    sizes = {p.name: p.stat().st_size for p in bombs}
    out: dict = {"bombs": sizes}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # 1. the indexer, with its default decoding workers
    t0 = time.perf_counter()
    proc = subprocess.Popen([PY, "-m", "lookalike", "index", str(work / "bombs"), "--db", str(work / "bomb-idx"),
                             "--model", model, "-q"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, peak_pss = _PeakRSS(proc.pid), _PeakRSS(proc.pid, "Pss")
    stdout, stderr = proc.communicate(timeout=600)
    out["indexer"] = {"rc": proc.returncode, "peak_rss_mb": round(peak.stop() / 2**20),
                      "peak_pss_mb": round(peak_pss.stop() / 2**20), "seconds":
                      round(time.perf_counter() - t0, 1), "summary": stdout.strip(),
                      "skipped": [line.split(": ", 2)[-1][:120] for line in stderr.splitlines() if "skipped" in line]}
    # 2. the server: an index of a few photos, then n bomb uploads at once
    idx = work / "serve-idx"
    photo_crops(work / "serve-imgs", 20, seed=1, size=96)
    subprocess.run([PY, "-m", "lookalike", "index", str(work / "serve-imgs"), "--db", str(idx), "--model", model, "-q"],
                   check=True, capture_output=True, env=env)
    with socket_.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = subprocess.Popen([PY, "-m", "lookalike", "serve", "--db", str(idx), "--port", str(port)], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or srv.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.25)
        warm = httpx.post(f"{base}/search", files={"image": ("q.jpg", (work / "serve-imgs").iterdir().__next__()
                                                             .read_bytes())}, timeout=120)
        idle = _tree_rss(srv.pid)
        peak = _PeakRSS(srv.pid)

        def send(p: Path):
            t = time.perf_counter()
            r = httpx.post(f"{base}/search", files={"image": (p.name, p.read_bytes())}, timeout=300)
            return p.name, r.status_code, round(time.perf_counter() - t, 2), r.json().get("detail", "")[:100] \
                if r.status_code != 200 else "ok"

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(send, bombs))
        wall = time.perf_counter() - t0
        after = _tree_rss(srv.pid)
        for _ in range(50):  # memory handed back once the answers are out: bounded wait, 5 s at most
            if after <= idle * 1.2:
                break
            time.sleep(0.1)
            after = _tree_rss(srv.pid)
        ok = httpx.post(f"{base}/search", files={"image": ("q.jpg", (work / "serve-imgs").iterdir().__next__()
                                                           .read_bytes())}, timeout=120).status_code
        out["server"] = {"warm_query": warm.status_code, "idle_rss_mb": round(idle / 2**20),
                         "peak_rss_mb": round(peak.stop() / 2**20), "rss_after_mb": round(after / 2**20),
                         "all_answered_s": round(wall, 1), "answers": answers, "query_after": ok}
    finally:
        srv.terminate()
        try:
            srv.wait(15)
        except subprocess.TimeoutExpired:
            srv.kill()
    limit = 1.5 * 1024
    out["target_met"] = (out["indexer"]["peak_pss_mb"] <= limit and out["server"]["peak_rss_mb"] <= limit
                         and out["server"]["query_after"] == 200)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="images in the collection")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--model", default="pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="work folder (default: a temp folder, removed)")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--skip-bad-inputs", action="store_true")
    ap.add_argument("--bombs", type=int, default=0, metavar="N",
                    help="only measure peak memory with N image bombs (indexer and server), then stop")
    ap.add_argument("--searcher", nargs=3, metavar=("IDX", "STOP", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.searcher:
        return searcher(*map(Path, args.searcher))
    if args.bombs:
        work = Path(args.work or tempfile.mkdtemp(prefix="lookalike-bombs-"))
        try:
            res = bomb_memory(work, args.model, args.bombs)
        finally:
            if not args.work:
                shutil.rmtree(work, ignore_errors=True)
        text = json.dumps(res, indent=1)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
        return 0 if res["target_met"] else 1

    work = Path(args.work or tempfile.mkdtemp(prefix="lookalike-stress-"))
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    try:
        imgs = work / "imgs"
        photo_crops(imgs, args.n, seed=args.seed, size=96,
                    names=("astronaut", "chelsea", "coffee", "rocket", "coins", "camera"))
        clean, idx = work / "clean", work / "killed"
        timing = timed_clean_run(imgs, clean, args.model)
        print(json.dumps({"clean_run": timing}), file=sys.stderr, flush=True)

        stop, sout = work / "stop", work / "searcher.json"
        sp = subprocess.Popen([PY, "-m", "benchmarks.stress", "--searcher", str(idx), str(stop), str(sout)])
        kl = kill_loop(imgs, idx, args.model, args.kills, timing, args.n, rng)
        print(json.dumps(kl), file=sys.stderr, flush=True)
        r = subprocess.run(index_cmd(imgs, idx, args.model), capture_output=True, text=True)
        resume_ok = r.returncode == 0
        if not resume_ok:
            print(r.stderr[-3000:], file=sys.stderr)
        stop.touch()
        sp.wait(timeout=300)
        srch = json.loads(sout.read_text())
        got, want = snapshot(idx), snapshot(clean)
        equal = got["paths"] == want["paths"] and got["vectors"] == want["vectors"]
        summary = {"images": args.n, "model": args.model, **kl, "final_resume_ok": resume_ok,
                   "same_as_clean_run": equal, "problems": got["problems"], "clean_run": timing,
                   "searcher": srch}
        if not args.skip_bad_inputs:
            bad = bad_inputs(work, imgs, clean, args.model)
            summary["bad_inputs_tried"] = len(bad)
            summary["bad_inputs_ok"] = sum(b["ok"] for b in bad)
            summary["bad_inputs"] = bad
        summary["total_s"] = round(time.perf_counter() - t0, 1)
    finally:
        if not args.work:
            for m in (work / "bad" / "tiny", work / "bad" / "read-only-view"):
                if os.path.ismount(m):
                    subprocess.run(["umount", "-l", str(m)])
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(summary, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    ok = (summary["kills"] >= args.kills and equal and not got["problems"] and srch["n_violations"] == 0
          and srch["n_errors"] == 0 and summary.get("bad_inputs_ok") == summary.get("bad_inputs_tried"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
