"""The wheel carries every package, the shipped models and the sample datasets (issue 15).

Builds the wheel offline (``pip wheel --no-build-isolation``) from a copy of the source tree and checks its listing;
`.ci/wheel-check` installs such a wheel into a fresh venv and runs it offline.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from lookalike.data.samples import data_root
from lookalike.retrieval.models import MODELS_DIR, cards

pytestmark = pytest.mark.slow  # builds the wheel and installs it into a fresh venv

ROOT = Path(__file__).resolve().parent.parent
_NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     "demo-*", "tmp", ".whl", ".gl")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "-w", str(work / "dist"), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = (work / "dist").glob("lookalike-*.whl")
    with zipfile.ZipFile(whl) as z:
        yield z


def _packages() -> dict[str, Path]:
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = conf["package-dir"]
    out = {}
    for pkg in conf["packages"]:
        top = max((p for p in dirs if pkg == p or pkg.startswith(p + ".")), key=len)
        out[pkg] = ROOT / dirs[top] / Path(*pkg[len(top):].split(".")[1:])
    return out


def test_every_package_and_module_is_listed_and_in_the_wheel(wheel):
    names = set(wheel.namelist())
    pkgs = _packages()
    folders = {p.resolve() for p in pkgs.values()}
    for top in {ROOT / d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()}:
        unlisted = [str(i.parent.relative_to(ROOT)) for i in top.rglob("__init__.py") if i.parent.resolve() not in folders]
        assert not unlisted, f"sub-packages missing from [tool.setuptools] packages: {unlisted}"
    for pkg, folder in pkgs.items():
        for py in folder.glob("*.py"):
            assert "/".join([*pkg.split("."), py.name]) in names, f"{py} is not in the wheel"
    assert not any(n.startswith(("tests/", "benchmarks/", "models/")) for n in names)
    entry = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "lookalike = lookalike.cli:main" in wheel.read(entry).decode()


def test_wheel_ships_every_model_file_and_the_samples(wheel):
    info = {i.filename: i for i in wheel.infolist()}
    files = [c.file for c in cards() if c.file]
    assert len(files) >= 10
    for f in files:
        name = f"lookalike/retrieval/weights/{f}"
        assert name in info, f"model file {f} is not in the wheel"
        assert info[name].file_size == (MODELS_DIR / f).stat().st_size
    assert "lookalike/retrieval/weights/README.md" in info
    for p in MODELS_DIR.glob("copy-calibration-*.npz"):  # the calibrated copy scores
        assert f"lookalike/retrieval/weights/{p.name}" in info, f"copy score {p.name} is not in the wheel"
    for f in ("mnist-5k.npz", "cifar10-sample.npz", "README.md"):
        name = f"lookalike/data/sample-files/{f}"
        assert name in info, f"sample file {f} is not in the wheel"
        assert info[name].file_size == (ROOT / "data" / "sample-files" / f).stat().st_size
    from lookalike.retrieval.export import SHIPPED_ONNX

    for name in SHIPPED_ONNX:  # exported by the build (setup.py), for the core install without torch
        meta = json.loads(wheel.read(f"lookalike/retrieval/weights/onnx/{name}.json"))
        data = wheel.read(f"lookalike/retrieval/weights/onnx/{name}.onnx")
        assert hashlib.sha256(data).hexdigest() == meta["onnx_sha256"] and meta["dim"] > 0, name
    assert sum(i.compress_size for i in info.values()) < 60 * 2**20  # ~20 MB of it the ONNX exports (issue 26: 32 MB before)


def test_samples_and_models_load_from_the_package_unless_lookalike_data_says_otherwise(monkeypatch, tmp_path):
    monkeypatch.delenv("LOOKALIKE_DATA", raising=False)
    assert data_root() == ROOT / "data" / "sample-files" and MODELS_DIR == ROOT / "retrieval" / "weights"
    monkeypatch.setenv("LOOKALIKE_DATA", str(tmp_path))
    assert data_root() == tmp_path
