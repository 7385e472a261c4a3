"""The core install (no torch, timm, scipy, scikit-learn, scikit-image, matplotlib): the shipped ONNX exports give the
torch path's vectors, index / search / duplicates run from them with torch hidden, and a command that needs torch
says so in one line naming the extra (exit 2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import PHOTOS

ROOT = Path(__file__).resolve().parent.parent
HIDDEN = ("torch", "torchvision", "timm", "scipy", "sklearn", "skimage", "matplotlib", "pywt", "openTSNE", "onnx")


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory, one_torch_thread):
    """The build step's exports of the default model (its head, and the backbone it runs on) and a small Siamese one,
    in a folder of their own."""
    from lookalike.retrieval.export import export_all

    d = tmp_path_factory.mktemp("onnx")
    export_all(d, names=("ntxent-copies", "siamese-triplet-mnist"), log=lambda _m: None)
    return d


def test_shipped_exports_give_the_torch_vectors(onnx_dir, photo_dir, tmp_path, monkeypatch):
    import lookalike.retrieval.export as export
    from lookalike.retrieval import runtime
    from lookalike.retrieval.embedders import get_embedder

    monkeypatch.setattr(export, "ONNX_DIR", onnx_dir)
    monkeypatch.setattr(export, "_SHIPPED", {})
    monkeypatch.setattr(runtime, "_LOADED", {})
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    images = [Image.open(photo_dir / f"{n}.png").convert("RGB") for n in PHOTOS]
    head, head_meta = export.shipped_onnx("ntxent-copies")  # the head alone, on the shipped backbone's file
    assert head_meta["backbone_onnx"] == str(onnx_dir / "efficientnet_lite0.onnx")
    assert head.stat().st_size < (onnx_dir / "efficientnet_lite0.onnx").stat().st_size / 2
    for name in ("ntxent-copies", "siamese-triplet-mnist"):
        path, meta = export.shipped_onnx(name)
        assert path.parent == onnx_dir and meta["source_sha256"] == export.source_digest(name)
        ref = get_embedder(name).embed_images(images)
        for rt in ("openvino", "onnxruntime"):
            emb = runtime.load_embedder(name, rt, "fp32")
            got = emb.embed_images(images)
            cos = (got * ref).sum(1)
            assert cos.min() >= 0.9999, (name, rt, cos)
    assert not any((tmp_path / "cache" / "models").glob("*/model.onnx"))  # compiled from the shipped file, no export


def test_a_stale_or_damaged_export_is_not_used(onnx_dir, tmp_path, monkeypatch):
    import shutil

    import lookalike.retrieval.export as export

    d = tmp_path / "onnx"
    shutil.copytree(onnx_dir, d)
    monkeypatch.setattr(export, "ONNX_DIR", d)
    monkeypatch.setattr(export, "_SHIPPED", {})
    assert export.shipped_onnx("siamese-mnist") is not None  # an alias finds its card's file
    meta = json.loads((d / "siamese-triplet-mnist.json").read_text())
    (d / "siamese-triplet-mnist.json").write_text(json.dumps({**meta, "source_sha256": "0" * 64}))  # retrained since
    (d / "ntxent-copies.onnx").write_bytes((d / "ntxent-copies.onnx").read_bytes()[:1000])  # cut short
    monkeypatch.setattr(export, "_SHIPPED", {})
    assert export.shipped_onnx("siamese-triplet-mnist") is None and export.shipped_onnx("ntxent-copies") is None
    assert export.shipped_onnx("efficientnet_lite0@128") is None


def test_a_head_needs_its_backbone_file_and_an_old_whole_export_is_redone(onnx_dir, tmp_path, monkeypatch):
    import shutil

    import lookalike.retrieval.export as export

    d = tmp_path / "onnx"
    shutil.copytree(onnx_dir, d)
    monkeypatch.setattr(export, "ONNX_DIR", d)
    monkeypatch.setattr(export, "_SHIPPED", {})
    assert export.shipped_onnx("ntxent-copies") is not None
    lite0 = (d / "efficientnet_lite0.onnx").read_bytes()
    (d / "efficientnet_lite0.onnx").write_bytes(lite0[:1000])  # the backbone cut short: the head cannot run
    monkeypatch.setattr(export, "_SHIPPED", {})
    assert export.shipped_onnx("ntxent-copies") is None and export.shipped_onnx("efficientnet_lite0") is None
    (d / "efficientnet_lite0.onnx").write_bytes(lite0)
    meta = json.loads((d / "ntxent-copies.json").read_text())
    del meta["backbone"]  # written before issue 26, when <name>.onnx was the whole network: not taken for a head
    (d / "ntxent-copies.json").write_text(json.dumps(meta))
    monkeypatch.setattr(export, "_SHIPPED", {})
    assert export.shipped_onnx("ntxent-copies") is None
    logs: list[str] = []
    export.export_all(d, names=("ntxent-copies",), log=logs.append)  # the build redoes it as a head; lite0 is kept
    assert [m.split(" to ")[0] for m in logs] == ["lookalike: exported ntxent-copies"]
    assert json.loads((d / "ntxent-copies.json").read_text())["backbone"] == "efficientnet_lite0"
    monkeypatch.setattr(export, "_SHIPPED", {})
    assert export.shipped_onnx("ntxent-copies") is not None


def test_head_on_backbone_gives_the_vectors_of_the_whole_network_export(onnx_dir, photo_dir, tmp_path, monkeypatch):
    """Indexes embedded with the single-file export (before issue 26) and queries embedded now agree."""
    import openvino as ov

    import lookalike.retrieval.export as export
    from lookalike.retrieval import runtime

    whole = tmp_path / "whole.onnx"
    whole.write_bytes(export.export_onnx("ntxent-copies")[0])
    monkeypatch.setattr(export, "ONNX_DIR", onnx_dir)
    monkeypatch.setattr(export, "_SHIPPED", {})
    monkeypatch.setattr(runtime, "_LOADED", {})
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "cache"))
    images = [Image.open(photo_dir / f"{n}.png").convert("RGB") for n in PHOTOS]
    core = ov.Core()
    for precision in ("fp32", "bf16") if runtime.bf16_available() else ("fp32",):
        emb = runtime.load_embedder("ntxent-copies", "openvino", precision)
        x = np.stack([emb.preprocess.normalize(emb.preprocess.to_uint8(im)[None])[0] for im in images])
        compiled = core.compile_model(str(whole), "CPU", {"INFERENCE_PRECISION_HINT": precision.replace("fp", "f"),
                                                          "PERFORMANCE_HINT": "LATENCY"})
        old = np.array(compiled.create_infer_request().infer({0: x})[compiled.output(0)])
        old /= np.linalg.norm(old, axis=1, keepdims=True)
        cos = (emb.embed_array(x) * old).sum(1)
        assert cos.min() >= 0.99999, (precision, cos)


def _core(tmp_path: Path, onnx_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """``lookalike ARGS`` with the train-only packages hidden (as in a core install) and the exports in ``onnx_dir``."""
    hide = tmp_path / "hide"
    hide.mkdir(exist_ok=True)
    (hide / "sitecustomize.py").write_text(textwrap.dedent(f"""
        import sys
        class _Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {set(HIDDEN)!r}:
                    raise ModuleNotFoundError(f"No module named '{{name}}'", name=name)
        sys.meta_path.insert(0, _Hide())
        """))
    code = (f"import sys; import lookalike.retrieval.export as x; x.ONNX_DIR = __import__('pathlib').Path({str(onnx_dir)!r}); "
            f"from lookalike.cli import main; sys.exit(main({list(args)!r}))")
    env = dict(os.environ, PYTHONPATH=str(hide), LOOKALIKE_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=300)


@pytest.mark.slow
def test_index_search_duplicates_run_without_torch_and_torch_commands_name_the_extra(onnx_dir, tmp_path):
    from lookalike.data.samples import load_sample

    imgs = tmp_path / "digits"
    imgs.mkdir()
    sample = load_sample("mnist", "test")
    for i in range(40):
        Image.fromarray(sample.images[i]).save(imgs / f"d{i:02d}.png")
    Image.fromarray(sample.images[0]).save(imgs / "again.png")
    r = _core(tmp_path, onnx_dir, "index", str(imgs), "--db", str(tmp_path / "idx"), "--model", "siamese-mnist", "-q")
    assert r.returncode == 0, r.stderr
    r = _core(tmp_path, onnx_dir, "search", str(imgs / "d07.png"), "--db", str(tmp_path / "idx"), "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    assert Path(json.loads(r.stdout)["results"][0]["path"]).name == "d07.png"
    r = _core(tmp_path, onnx_dir, "duplicates", "--db", str(tmp_path / "idx"), "--json")
    assert r.returncode == 0, r.stderr
    groups = json.loads(r.stdout)["groups"]
    assert any({Path(f["path"]).name for f in g["files"]} >= {"d00.png", "again.png"} for g in groups), groups
    for args, words in ((["search", str(imgs / "d07.png"), "--db", str(tmp_path / "idx"), "--runtime", "torch"],
                         "--runtime torch needs torch: pip install 'lookalike[train]'"),
                        (["eval", "--model", "siamese-mnist", "--dataset", "mnist-sample"],
                         "eval: needs torch, which is not installed: pip install 'lookalike[train]'"),
                        (["index", str(imgs), "--db", str(tmp_path / "idx2"), "--model", "efficientnet_lite1"],
                         "exporting it needs torch (pip install 'lookalike[train]')")):
        r = _core(tmp_path, onnx_dir, *args)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_denoise_auto_on_photos_runs_without_torch_as_with_it(onnx_dir, tmp_path, photo_dir):
    gallery = tmp_path / "photos"
    gallery.mkdir()
    rng = np.random.default_rng(0)
    for n in PHOTOS[:3]:
        im = Image.open(photo_dir / f"{n}.png").convert("RGB")
        im.save(gallery / f"{n}.jpg", quality=92)
    clean = Image.open(photo_dir / f"{PHOTOS[0]}.png").convert("RGB")
    noisy = np.clip(np.asarray(clean, np.float64) + rng.normal(0, 60, (clean.height, clean.width, 3)), 0, 255)
    Image.fromarray(noisy.astype(np.uint8)).save(tmp_path / "noisy.png")
    clean.save(tmp_path / "clean.png")
    assert _core(tmp_path, onnx_dir, "index", str(gallery), "--db", str(tmp_path / "idx"), "--model", "siamese-mnist",
                 "-q").returncode == 0
    for query, method in (("noisy.png", "lowfreq"), ("clean.png", "none")):
        args = ["search", str(tmp_path / query), "--db", str(tmp_path / "idx"), "--denoise", "auto", "-k", "3", "--json"]
        r = _core(tmp_path, onnx_dir, *args)
        assert r.returncode == 0, r.stderr
        light = json.loads(r.stdout)["denoise"]
        with_torch = subprocess.run([sys.executable, "-m", "lookalike", *args], capture_output=True, text=True,
                                    env=dict(os.environ, LOOKALIKE_CACHE=str(tmp_path / "cache")), timeout=300)
        full = json.loads(with_torch.stdout)["denoise"]
        assert light["method"] == full["method"] == method and abs(light["sigma"] - full["sigma"]) < 1e-4, (light, full)
    r = _core(tmp_path, onnx_dir, "search", str(tmp_path / "noisy.png"), "--db", str(tmp_path / "idx"), "--denoise",
              "ddim")
    assert r.returncode == 2 and r.stderr.strip().endswith("needs torch: pip install 'lookalike[train]'"), r.stderr


@pytest.mark.slow
def test_every_ui_page_renders_without_torch(onnx_dir, tmp_path, photo_dir):
    assert _core(tmp_path, onnx_dir, "index", str(photo_dir), "--db", str(tmp_path / "idx"), "--model", "siamese-mnist",
                 "-q").returncode == 0
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        import lookalike.retrieval.export as x
        x.ONNX_DIR = __import__('pathlib').Path({str(onnx_dir)!r})
        from helpers import page
        for name in ("index_page", "search_page", "compare_page", "explore_page", "duplicates_page"):
            at = page(name).run()
            assert not at.exception and not at.error, (name, [str(e.value)[:300] for e in at.exception],
                                                       [e.value for e in at.error])
        print("torch" in sys.modules)
        """)
    hide = tmp_path / "hide"
    env = dict(os.environ, PYTHONPATH=str(hide), LOOKALIKE_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1",
               LOOKALIKE_DB=str(tmp_path / "idx"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "False", r.stderr[-2000:]
