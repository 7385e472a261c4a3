"""Embedding distributed with Ray Data gives what the single-process path gives: on a local Ray instance, on an
existing cluster (`ray start --head` on this machine, joined by `--address`, stopped by the test), and with an
embedding actor killed mid-run (the run finishes or fails with one line; the next run resumes, nothing lost).

Ray comes with the dev extra (`lookalike[distributed]`, pinned), so these run in every CI run.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lookalike import Engine
from lookalike.cli import main as cli
from lookalike.data.photos import photo_crops
from helpers import consistent, free_port

pytest.importorskip("ray", reason="Ray not installed (pip install 'lookalike[distributed]')")


def _contents(idx):
    con = sqlite3.connect(idx / "metadata.db")
    rows = {sha: np.frombuffer(v, np.float32) for sha, v in con.execute("select sha256, vector from images")}
    paths = dict(con.execute("select f.path, i.sha256 from files f join images i on i.id = f.image_id"))
    con.close()
    return rows, paths


@pytest.mark.slow
def test_ray_engine_matches_local(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    photo_crops(imgs, 40, seed=7)
    (imgs / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert cli(["index", str(imgs), "--db", str(local), "--model", "pixels", "-q", "--workers", "0"]) == 0
    capsys.readouterr()
    assert cli(["index", str(imgs), "--db", str(remote), "--model", "pixels", "-q", "--executor", "ray", "--workers", "2",
                "--batch-size", "8", "--chunk-size", "16"]) == 0
    out = capsys.readouterr().out
    assert "indexed 40," in out and "skipped 1" in out, out
    a, pa = _contents(local)
    b, pb = _contents(remote)
    assert pa == pb and set(a) == set(b)
    assert all(np.allclose(a[s], b[s], atol=1e-6) for s in a)
    e = Engine.open(remote, create=False)
    consistent(e)
    q = sorted(imgs.glob("*.jpg"))[4]
    assert e.search(q, k=1)[0].path == str(q)
    e.close()
    # incremental run through Ray (by the option's old name, still accepted): nothing new, nothing embedded
    assert cli(["index", str(imgs), "--db", str(remote), "-q", "--engine", "ray", "--workers", "2"]) == 0
    assert "indexed 0, unchanged 40" in capsys.readouterr().out


def test_address_without_ray_engine_is_refused(tmp_path, capsys):
    assert cli(["index", str(tmp_path), "--db", str(tmp_path / "i"), "--address", "auto"]) == 2
    assert "--executor ray" in capsys.readouterr().err


def _sessions(sid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes in session ``sid`` (a cluster this module started)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                out.append((int(d.name), (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")))
        except (OSError, IndexError, ValueError):
            pass
    return out


@dataclass
class Cluster:
    """A Ray head started by this module with ``ray start --head --block``, in a session of its own."""

    proc: subprocess.Popen
    address: str

    def actors(self) -> list[int]:
        """Pids of this cluster's embedding actors."""
        return [pid for pid, cmd in _sessions(self.proc.pid) if "_EmbedActor" in cmd]

    def running(self) -> bool:
        """The head process lives and its GCS port takes connections."""
        host, port = self.address.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError:
            return False
        return self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to every process of the head's session (the head, GCS, raylet, workers), SIGKILL after 15 s."""
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            for pid, _ in _sessions(self.proc.pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while _sessions(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster():
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the `ray` command is not installed")
    proc = subprocess.Popen([ray_cli, "start", "--head", "--block", f"--port={free_port()}",
                             "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    watchdog = threading.Timer(240, proc.kill)
    watchdog.start()
    lines, address = [], None
    for line in proc.stdout:
        lines.append(line)
        if m := re.search(r"ray start --address='([^']+)'", line):
            address = m.group(1)
            break
    watchdog.cancel()
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
    c = Cluster(proc, address or "")
    if address is None:
        c.stop()
        pytest.fail("ray start --head failed: " + "".join(lines)[-2000:])
    yield c
    c.stop()


def _committed(idx: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{idx / 'metadata.db'}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("select count(*) from images").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.slow
def test_existing_cluster_by_address_with_an_actor_killed_mid_run(cluster, tmp_path, capsys):
    """`index --executor ray --address ADDR` on a `ray start --head` cluster; one embedding actor SIGKILLed after the
    first chunk is committed: the run finishes or fails with one line, the committed chunks stay, the next run
    embeds only the rest, and the index equals the single-process one. The cluster outlives the runs; the test
    then stops it."""
    n = 200
    imgs, ref, idx = tmp_path / "imgs", tmp_path / "ref", tmp_path / "idx"
    photo_crops(imgs, n, seed=9)
    cmd = [sys.executable, "-m", "lookalike", "index", str(imgs), "--db", str(idx), "--model", "pixels", "-q", "--executor",
           "ray", "--address", cluster.address, "--workers", "2", "--batch-size", "4", "--chunk-size", "4"]
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (_committed(idx) and cluster.actors()):
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no chunk committed in 300 s"
            time.sleep(0.02)
        os.kill(cluster.actors()[0], signal.SIGKILL)
        at_kill = _committed(idx)
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert at_kill < n, "the run had finished before the kill"
    assert run.returncode in (0, 2) and "Traceback" not in err + out, err[-3000:]
    if run.returncode == 2:
        errors = [line for line in err.splitlines() if line.startswith("lookalike: ")]
        assert len(errors) == 1 and "Ray run failed" in errors[0], err[-3000:]
    after = _committed(idx)
    assert at_kill <= after <= n
    capsys.readouterr()
    assert cli(cmd[3:]) == 0  # the next run, in this process
    rerun = capsys.readouterr().out
    assert f"indexed {n - after}, unchanged {after}," in rerun, (rerun, after)
    assert cli(["index", str(imgs), "--db", str(ref), "--model", "pixels", "-q", "--workers", "0"]) == 0
    a, pa = _contents(ref)
    b, pb = _contents(idx)
    assert pa == pb and set(a) == set(b) and all(np.array_equal(a[s], b[s]) for s in a)
    e = Engine.open(idx, create=False)
    consistent(e)
    e.close()
    assert cluster.running()  # the commands only disconnected
    cluster.stop()
    assert not _sessions(cluster.proc.pid) and not cluster.running()
