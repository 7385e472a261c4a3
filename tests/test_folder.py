"""The index folder: typed, versioned config, the writer lock, and how old or damaged configs are met."""
from __future__ import annotations

import json

import pytest

from lookalike import Engine, EngineError
from lookalike.cli import main as cli
from lookalike.retrieval.folder import FORMAT_VERSION, IndexConfig, IndexFolder


def _config() -> IndexConfig:
    return IndexConfig.new({"model": "pixels@16", "dim": 768, "preprocess": {"input_size": 16}}, None, None)


def test_config_round_trips_and_keeps_unknown_keys(tmp_path):
    folder = IndexFolder(tmp_path / "idx")
    folder.create()
    cfg = _config()
    cfg.extra["written_by_a_later_minor_version"] = {"x": 1}
    cfg.search = {"nprobe": 4, "factory": "IVF4,Flat"}
    folder.write_config(cfg)
    back = folder.read_config()
    assert back == cfg and back.format == FORMAT_VERSION
    assert json.loads(folder.config_path.read_text())["written_by_a_later_minor_version"] == {"x": 1}


@pytest.mark.parametrize("text,match", [
    ("{}", "'model' is missing"), ("[]", "a JSON object was expected"), ("{", "unreadable index configuration"),
    ('{"model": "pixels", "dim": -3}', "'dim' is missing or invalid"),
    ('{"model": "pixels", "dim": 8, "format": 99}', "newer than this lookalike reads"),
])
def test_damaged_or_newer_config_is_one_line(tmp_path, text, match, capsys):
    d = tmp_path / "idx"
    d.mkdir()
    (d / "lookalike.json").write_text(text)
    with pytest.raises(EngineError, match=match):
        IndexFolder(d).read_config()
    for command in (["status", "--db", str(d)], ["search", str(d / "lookalike.json"), "--db", str(d)],
                    ["index", str(tmp_path), "--db", str(d), "-q"]):
        assert cli(command) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("lookalike: ") and "\n" not in err and "Traceback" not in err


def test_previous_release_config_opens(tmp_path, photos):
    """A config as the first release wrote it (a plain dict, no 'extra', string keys only) still opens."""
    e = Engine.open(tmp_path / "idx", model="pixels@16")
    e.add([photos], progress=False, workers=0, warn=None)
    e.close()
    old = json.loads((tmp_path / "idx" / "lookalike.json").read_text())
    for key in ("max_memory", "on_disk", "search", "hnsw_missed_target", "recall_target", "extra"):
        old.pop(key, None)
    (tmp_path / "idx" / "lookalike.json").write_text(json.dumps(old))
    with Engine.open(tmp_path / "idx", create=False) as e:
        assert e.status().images == len(list(photos.iterdir()))


def test_writer_lock_is_exclusive_and_released(tmp_path):
    folder = IndexFolder(tmp_path)
    with folder.writer_lock():
        import subprocess
        import sys

        code = ("import sys; from lookalike.retrieval.folder import IndexFolder, EngineError\n"
                f"try:\n with IndexFolder({str(tmp_path)!r}).writer_lock(): sys.exit(0)\n"
                "except EngineError as e: print(e); sys.exit(3)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 3 and "another lookalike process is writing" in r.stdout
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0


def test_empty_db_path_is_refused():
    with pytest.raises(EngineError, match="path is empty"):
        IndexFolder("")
