"""Inference runtimes (retrieval/runtime.py): every runtime gives torch's vectors for every model family, the
compiled model is cached and rebuilt when damaged, and a query on a cached model never imports torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import PHOTOS
from lookalike import Engine
from lookalike.retrieval.engine import EngineError
from lookalike.retrieval.models import DEFAULT_EMBEDDER, MODELS_DIR
from lookalike.retrieval.preprocess import PreprocessConfig
from lookalike.retrieval.runtime import RuntimeUnavailable, load_embedder

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = f"checkpoint:{MODELS_DIR / 'siamese-contrastive-cifar10.pt'}"
# one name per registered model family: packaged backbone (@SIZE), ensemble of two sizes (resized inside the
# graph), projection head on a frozen backbone, shipped Siamese net, a checkpoint: file, the pixel baseline; and the
# default model of new indexes (a head read at its hidden layer, 224 px)
FAMILIES = ["efficientnet_lite0@96", "efficientnet_lite0@96+efficientnet_lite1@112", "ntxent-cifar10",
            "siamese-mnist", CHECKPOINT, "pixels", DEFAULT_EMBEDDER]
COMPILED = ["openvino", "onnxruntime"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, one_torch_thread):
    """One model cache for the module (exports are the slow part), passed to subprocesses too."""
    d = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKALIKE_CACHE", str(d))
        yield d


@pytest.fixture(scope="module")
def images(photo_dir) -> list[Image.Image]:
    return [Image.open(photo_dir / f"{n}.png").convert("RGB") for n in PHOTOS]


def _run(code: str, cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, LOOKALIKE_CACHE=str(cache), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


@pytest.mark.parametrize("cfg", [PreprocessConfig(), PreprocessConfig(input_size=240, crop_pct=0.875),
                                 PreprocessConfig(input_size=28, mean=(0.5,), std=(0.5,), interpolation="bilinear",
                                                  grayscale=True)],
                         ids=["224-bicubic", "crop-0.875", "gray-28-bilinear"])
def test_numpy_preprocessing_matches_torchvision(cfg, images):
    tf = cfg.build_transform()
    for im in images:
        ours = cfg.normalize(cfg.to_uint8(im)[None])[0]
        ref = tf(im).numpy()
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_every_runtime_gives_torch_vectors(name, cache, images):
    ref = load_embedder(name, "torch").embed_images(images)
    for runtime in COMPILED:
        emb = load_embedder(name, runtime)
        assert (emb.runtime, emb.dim) == (runtime, ref.shape[1])
        vecs = emb.embed_images(images)
        cos = (vecs * ref).sum(axis=1)
        assert cos.min() >= 0.9999, (runtime, cos.min())
        assert np.array_equal(np.argsort(-(vecs @ vecs.T), axis=1), np.argsort(-(ref @ ref.T), axis=1))


def test_index_built_with_one_runtime_searched_with_another(cache, photos):
    db = photos.parent / "idx"
    with Engine.open(db, model="efficientnet_lite0@96", runtime="openvino") as eng:
        eng.add([photos], progress=False, warn=None)
        assert eng.config.precision == "fp32" and "runtime" not in json.loads(eng.folder.config_path.read_text())
    hits = {}
    for runtime in ("torch", "onnxruntime", "openvino"):
        with Engine.open(db, create=False, runtime=runtime) as eng:
            hits[runtime] = [(r.path, round(r.score, 4)) for r in eng.search(photos / "coffee.png", k=10)]
    assert hits["torch"] == hits["onnxruntime"] == hits["openvino"]
    assert len(hits["torch"]) == 10 and hits["torch"][0][0].endswith("coffee.png")
    with pytest.raises(EngineError, match="built at precision fp32, not bf16"):
        Engine.open(db, create=False, precision="bf16")


@pytest.mark.slow
def test_cache_is_reused_and_damaged_files_are_rebuilt(cache, images):
    name = "siamese-contrastive-mnist"  # not among the shipped ONNX exports: exported into the cache
    load_embedder(name, "openvino")
    entry = next(cache.glob("models/siamese-contrastive-mnist-*"))
    blob = next(entry.glob("openvino-*-fp32-*.blob"))
    stamp = blob.stat().st_mtime_ns
    code = ("import sys, numpy as np\nfrom PIL import Image\nfrom lookalike.retrieval.runtime import load_embedder\n"
            f"e = load_embedder({name!r}, 'openvino')\n"
            "v = e.embed_images([Image.new('RGB', (50, 40), (200, 30, 90))])\n"
            "print(type(e).__name__, v.shape, 'torch' in sys.modules)")
    done = _run(code, cache)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CompiledEmbedder", "(1,", "64)", "False"] and done.stderr == ""
    assert blob.stat().st_mtime_ns == stamp  # reused, not compiled again
    blob.write_bytes(blob.read_bytes()[:-100])  # a truncated compiled model
    done = _run(code, cache)
    assert done.returncode == 0 and done.stdout.split()[-1] == "False"
    assert done.stderr.strip().splitlines() == [f"lookalike: {blob}: damaged cache file; compiling the model again"]
    done = _run(code, cache)
    assert done.stderr == ""  # the rebuilt file is good
    (entry / "model.onnx").write_bytes(b"not onnx")
    done = _run(code, cache)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"lookalike: {entry / 'model.onnx'}: damaged cache file; exporting the model again"]


@pytest.mark.slow
def test_query_path_does_not_import_torch(cache, photos):
    db = photos.parent / "idx"
    with Engine.open(db, model="efficientnet_lite0@96", runtime="openvino") as eng:
        eng.add([photos], progress=False, warn=None)
    code = ("import sys\nfrom lookalike.cli import main\n"
            f"rc = main(['search', {str(photos / 'chelsea.png')!r}, '--db', {str(db)!r}, '-k', '3', '--json'])\n"
            "assert rc == 0, rc\nrc = main(['status', '--db', " + repr(str(db)) + "])\n"
            "print('loaded:', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'timm', 'torchvision'}))")
    done = _run(code, cache)
    assert done.returncode == 0, done.stderr
    assert json.JSONDecoder().raw_decode(done.stdout)[0]["results"][0]["path"].endswith("chelsea.png")
    assert "efficientnet_lite0@96 (1280-d, fp32)" in done.stdout
    assert done.stdout.strip().endswith("loaded: []")
    done = _run("import sys, contextlib, io\nfrom lookalike.cli import main\n"
                "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n    main(['--help'])\n"
                "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'timm', 'torchvision', 'faiss'}))",
                cache)
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.slow
def test_openvino_missing_gives_one_line_error_and_auto_falls_back(cache, photos):
    db = photos.parent / "idx"
    with Engine.open(db, model="pixels", runtime="torch") as eng:
        eng.add([photos], progress=False, warn=None)
    hide = "import sys\nsys.modules['openvino'] = None\nfrom lookalike.cli import main\n"
    done = _run(hide + f"sys.exit(main(['search', {str(photos / 'moon.png')!r}, '--db', {str(db)!r}, "
                       "'--runtime', 'openvino']))", cache)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lookalike: OpenVINO is not available") and "pip install" in lines[0]
    done = _run(hide + f"sys.exit(main(['search', {str(photos / 'moon.png')!r}, '--db', {str(db)!r}, '-k', '1']))",
                cache)
    assert done.returncode == 0 and done.stdout.split()[2].endswith("moon.png")
    assert done.stderr.strip().splitlines() == ["lookalike: OpenVINO is not available (import of openvino halted; "
                                                "None in sys.modules); pip install openvino; using torch"]


def test_unsupported_precision_is_one_line(cache):
    with pytest.raises(RuntimeUnavailable, match="needs --runtime openvino"):
        load_embedder("pixels", "torch", "bf16")
    with pytest.raises(RuntimeUnavailable, match="ONNX Runtime runs fp32 here"):
        load_embedder("pixels", "onnxruntime", "int8")


@pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="a GPU is present")
def test_without_a_gpu_indexing_stays_on_the_cpu(cache, photos):
    from lookalike.retrieval.runtime import cuda_embedder

    assert cuda_embedder("pixels") is None
    with Engine.open(photos.parent / "idx", model="pixels", runtime="auto") as eng:
        assert eng.add([photos], progress=False, warn=None).indexed == len(PHOTOS)
        assert type(eng.embedder).__name__ == "CompiledEmbedder"


@pytest.mark.slow
def test_new_indexes_take_bf16_only_for_models_that_keep_their_accuracy(cache, photos):
    from lookalike.retrieval.runtime import bf16_available, default_precision

    assert default_precision("efficientnet_lite0") == "fp32"  # P@1 drops 0.006 on CIFAR-10-sample in bf16
    assert default_precision("ntxent-copies", "torch") == "fp32"
    assert default_precision("ntxent-copies") == ("bf16" if bf16_available() else "fp32")
    if not bf16_available():
        pytest.skip("this CPU has no bf16 in OpenVINO")
    db = photos.parent / "idx"
    with Engine.open(db, model="ntxent-copies") as eng:
        eng.add([photos], progress=False, warn=None)
        assert eng.config.precision == "bf16"
        bf16 = [r.path for r in eng.search(photos / "coffee.png", k=3)]
    done = _run("import sys\nfrom lookalike.cli import main\n"
                f"sys.exit(main(['search', {str(photos / 'coffee.png')!r}, '--db', {str(db)!r}, '-k', '3', "
                "'--runtime', 'torch', '--json']))", cache)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines() == ["lookalike: precision bf16 needs --runtime openvino; this index is "
                                                "bf16: using fp32 vectors (cosine about 0.998 to bf16 ones)"]
    assert [r["path"] for r in json.loads(done.stdout)["results"]][0] == bf16[0]
