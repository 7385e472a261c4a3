"""The metadata store on a real PostgreSQL server (a throwaway cluster started by the test, on a unix socket).

Skipped, with the reason, where the server binaries (Debian: apt-get install postgresql) or psycopg are missing.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from lookalike import Engine
from lookalike.cli import main as cli
from helpers import free_port

pytestmark = pytest.mark.slow  # starts a PostgreSQL cluster

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'lookalike[postgres]')")


def _bins() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    w = shutil.which("initdb")
    return Path(w).parent if w else None


@pytest.fixture(scope="module")
def pg_url():
    bins = _bins()
    if bins is None or not (bins / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root: use the 'postgres' account
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("running as root without a 'postgres' user to start the server as")
        run_as = ["runuser", "-u", "postgres", "--"]
    top = Path(tempfile.mkdtemp(prefix="lookalike-pg-", dir="/tmp"))
    top.chmod(0o755)
    data, sock = top / "data", top / "sock"
    sock.mkdir()
    if run_as:
        shutil.chown(top, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()
    try:
        r = subprocess.run(run_as + [str(bins / "initdb"), "-D", str(data), "-A", "trust", "-U", "lookalike",
                                     "--no-sync", "-E", "UTF8"], capture_output=True, text=True, timeout=180)
        if r.returncode:
            pytest.skip(f"initdb failed: {r.stderr.strip()[-300:]}")
        opts = f"-c listen_addresses='' -k {sock} -p {port} -c fsync=off"
        r = subprocess.run(run_as + [str(bins / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(top / "log"), "-w",
                                     "-t", "120", "start"], capture_output=True, text=True, timeout=180)
        if r.returncode:
            log = (top / "log").read_text()[-500:] if (top / "log").exists() else r.stderr
            pytest.skip(f"PostgreSQL server did not start: {log.strip()}")
        yield f"postgresql+psycopg://lookalike@/postgres?host={sock}&port={port}"
    finally:
        if data.exists():
            subprocess.run(run_as + [str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=120)
        shutil.rmtree(top, ignore_errors=True)


def _rows(url: str, sql: str):
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as con:
        return con.execute(sql).fetchall()


def test_index_search_update_on_postgresql(pg_url, photos, tmp_path, capsys):
    idx = tmp_path / "idx"
    n = len(list(photos.iterdir()))
    assert cli(["index", str(photos), "--db", str(idx), "--db-url", pg_url, "--model", "pixels", "-q", "--workers", "0"]) == 0
    assert f"indexed {n}," in capsys.readouterr().out
    assert not (idx / "metadata.db").exists()  # the metadata lives on the server
    assert _rows(pg_url, "select count(*), min(length(vector)) from images") == [(n, 3072 * 4)]
    assert _rows(pg_url, "select data_type from information_schema.columns where table_name='images' and column_name='id'") == [("bigint",)]

    # search (the URL is remembered in lookalike.json)
    q = photos / "chelsea.png"
    assert cli(["search", str(q), "--db", str(idx), "-k", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(str(q))

    # incremental: unchanged, a changed file (its old image becomes an orphan), a removed file
    assert cli(["index", str(photos), "--db", str(idx), "-q", "--workers", "0"]) == 0
    assert f"unchanged {n}," in capsys.readouterr().out
    from PIL import Image

    Image.open(photos / "coins.png").convert("RGB").rotate(90).save(photos / "coins.png")
    (photos / "moon.png").unlink()
    assert cli(["index", str(photos), "--db", str(idx), "-q", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "indexed 1," in out and "removed 1," in out
    e = Engine.open(idx, create=False)
    try:
        ids = {r[0] for r in _rows(pg_url, "select id from images")}
        assert set(int(i) for i in e.index.visible_ids()) == ids and len(ids) == n - 1
        assert _rows(pg_url, "select count(*) from images where id not in (select image_id from files)") == [(0,)]
        st = e.status()
        assert st.images == st.files == st.vectors == n - 1
    finally:
        e.close()
    # rebuild from the vectors stored on the server
    assert cli(["rebuild", "--db", str(idx), "--index-type", "HNSW32"]) == 0
    assert cli(["search", str(photos / "rocket.png"), "--db", str(idx), "-k", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("rocket.png")


def test_unreachable_server_is_a_one_line_error(tmp_path, capsys, photos):
    url = f"postgresql+psycopg://nobody@/nowhere?host={tmp_path}&port={free_port()}"
    assert cli(["index", str(photos), "--db", str(tmp_path / "idx"), "--db-url", url, "--model", "pixels", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("lookalike: ") and "cannot open metadata database" in err
