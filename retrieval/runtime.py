"""Inference runtimes under the embedders: a model is exported to ONNX once and compiled by OpenVINO (or run by
ONNX Runtime) for the CPU; both are cached on disk, so a later process embeds without importing torch or timm.

    $LOOKALIKE_CACHE (default $XDG_CACHE_HOME/lookalike or ~/.cache/lookalike)/models/<name>-<key>/
      meta.json        dimension, preprocessing and the ONNX file's sha256 (key: name, weights, input size, format)
      model.onnx       the exported network: a preprocessed NCHW float batch -> unit vectors
      openvino-<version>-<precision>.blob   the compiled model, its sha256 on the first line

Every file is written atomically and checked on reading; a damaged one is rebuilt with a one-line note.
The shipped models come as ONNX files in the package (retrieval/export.py, exported when the wheel is built): those
are compiled from there, and only other models (checkpoints, ``@SIZE``, ensembles) are exported here, with torch.
A head shipped on its backbone (``ntxent-copies`` on ``efficientnet_lite0``) is two files, the backbone's and the
head's: OpenVINO joins them into one network before compiling (the blob's key: both files' sha256), ONNX Runtime
runs one after the other.
Training stays on torch; ``load_embedder(name, "torch")`` is :func:`~lookalike.retrieval.embedders.get_embedder`.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from lookalike.errors import LookalikeError
from lookalike.fsutil import atomic_path, atomic_write_text
from lookalike.log import logger
from lookalike.protocols import EmbedderLike
from lookalike.settings import PRECISIONS, RUNTIMES, cache_root
from lookalike.indexer.loading import sha256_file

from .export import EXPORT_FORMAT, export_onnx, shipped_onnx
from .models import card_path, cards, get_card
from .preprocess import PreprocessConfig

__all__ = ["RuntimeUnavailable", "CompiledEmbedder", "load_embedder", "cuda_embedder", "cache_dir", "weights_fingerprint",
           "RUNTIMES", "PRECISIONS"]

_log = logger(__name__)
_LOCK = threading.Lock()
_LOADED: dict[tuple[str, str, str, str], "CompiledEmbedder"] = {}


class RuntimeUnavailable(LookalikeError, RuntimeError):
    """A runtime or precision that cannot run here; the message is one line."""


_USABLE_CACHE: dict[str, Path] = {}  # the configured cache folder -> the folder used (a temporary one if unusable)


def _cache_problem(path: Path) -> str | None:
    """Why ``path`` cannot hold the model cache (None: it can)."""
    if path.exists() and not path.is_dir():
        return "a file, not a folder"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return exc.strerror or str(exc)
    if not path.is_dir():
        return "not a folder"
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return "not writable"
    return None


def cache_dir() -> Path:
    """Where compiled models live: ``$LOOKALIKE_CACHE``, else ``$XDG_CACHE_HOME/lookalike`` or
    ``~/.cache/lookalike``. One that cannot be used (a file, not creatable, read-only) is replaced, with one note,
    by a temporary folder removed at exit: models are then exported and compiled again by each process."""
    wanted = cache_root()
    key = str(wanted)
    with _CACHE_LOCK:
        if key not in _USABLE_CACHE:
            problem = _cache_problem(wanted)
            if problem is None:
                _USABLE_CACHE[key] = wanted
            else:
                import atexit
                import shutil
                import tempfile

                tmp = Path(tempfile.mkdtemp(prefix="lookalike-cache-"))
                atexit.register(shutil.rmtree, tmp, True)
                note(f"{wanted}: model cache folder unusable ({problem}); compiling models for this run only "
                     f"(set LOOKALIKE_CACHE to a writable folder to keep them)")
                _USABLE_CACHE[key] = tmp
        return _USABLE_CACHE[key]


_CACHE_LOCK = threading.Lock()


def note(msg: str) -> None:
    """A one-line warning on the lookalike log (a fallback taken, a cache rebuilt; lookalike/log.py)."""
    _log.warning(msg)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def _file_hash(path: Path) -> str:
    """sha256 of a weights file, remembered in the cache by (path, size, mtime) so each is read once."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    memo_path = cache_dir() / "hashes.json"
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if not isinstance(memo, dict) or not isinstance(memo.get(key), str):
        memo = memo if isinstance(memo, dict) else {}
        memo[key] = sha256_file(str(path))
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(memo_path, json.dumps(memo))
        except OSError:
            pass
    return memo[key]


def _package_weights(module: str, cls: str) -> Path | None:
    try:  # the weights packages import only os and inspect
        return Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except (ImportError, AttributeError):
        return None


def weights_fingerprint(name: str) -> str:
    """A digest of everything the network ``name`` is built from, found without torch: its checkpoint files, the
    packaged backbone weights (heads and ensembles use them) and the torch / timm versions that build the graph."""
    h = hashlib.sha256(f"{EXPORT_FORMAT}|{name}|torch {_version('torch')}|timm {_version('timm')}".encode())
    for part in name.split("+"):
        base = re.sub(r"@\d+$", "", part)
        card = get_card(base)
        if base.startswith("checkpoint:"):
            h.update(_file_hash(Path(base[len("checkpoint:"):]).expanduser()).encode())
        elif card is not None and card.file:
            h.update(_file_hash(card_path(card)).encode())
    for card in cards("backbone"):
        path = _package_weights(*card.package) if card.package else None
        h.update((_file_hash(path) if path else "missing").encode())
    return h.hexdigest()


def _input_size(name: str) -> int | None:
    """The input size the name implies (``@SIZE`` or the packaged default); a checkpoint's is in its file."""
    m = re.search(r"@(\d+)$", name)
    card = get_card(name)
    return int(m.group(1)) if m else (card.input_size if card else None)


class CompiledEmbedder:
    """An embedder run by a compiled runtime: PIL images or uint8/float NCHW batches -> unit vectors, no torch."""

    def __init__(self, name: str, dim: int, preprocess: PreprocessConfig, runtime: str, precision: str,
                 infer: Callable[[np.ndarray], np.ndarray]) -> None:
        self.name, self.dim, self.preprocess = name, int(dim), preprocess
        self.runtime, self.precision = runtime, precision
        self._infer = infer
        self._lock = threading.Lock()  # one inference request, shared by threads (the UI's)

    def embed_array(self, batch: np.ndarray) -> np.ndarray:
        """Embed a preprocessed float32 NCHW batch; returns (N, dim) unit vectors."""
        with self._lock:
            y = np.array(self._infer(np.ascontiguousarray(batch, np.float32)), dtype=np.float32)
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    def embed_tensor(self, batch: Any) -> np.ndarray:
        """Embed a uint8 or float NCHW batch (numpy array or CPU tensor), as ``Embedder.embed_tensor``."""
        arr = batch.numpy() if hasattr(batch, "numpy") else np.asarray(batch)
        return self.embed_array(self.preprocess.normalize(arr) if arr.dtype == np.uint8 else arr)

    def embed_images(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        """Embed PIL images (already RGB); returns (N, dim) float32 unit vectors."""
        out = [self.embed_tensor(np.stack([self.preprocess.to_uint8(im) for im in images[i:i + batch_size]]))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    @property
    def transform_uint8(self) -> Callable[[Image.Image], Any]:
        """PIL RGB image -> resized CHW uint8 tensor, for the indexing DataLoader (which has torch)."""
        import torch

        return lambda im: torch.from_numpy(self.preprocess.to_uint8(im))

    def describe(self) -> dict:
        """What the index folder records about this embedder."""
        return {"model": self.name, "dim": self.dim, "preprocess": self.preprocess.to_dict()}


class _Entry:
    """One model's folder in the cache."""

    def __init__(self, name: str) -> None:
        key = hashlib.sha256(json.dumps([name, weights_fingerprint(name), _input_size(name), EXPORT_FORMAT])
                             .encode()).hexdigest()[:16]
        self.name = name
        self.dir = cache_dir() / "models" / f"{re.sub(r'[^A-Za-z0-9_.@+-]', '_', name)[-60:]}-{key}"
        self.meta_path, self.onnx_path = self.dir / "meta.json", self.dir / "model.onnx"
        self.backbone_path: Path | None = None  # a shipped head's backbone, run before ``onnx_path``

    def meta(self) -> dict:
        """dim, preprocess, onnx_sha256 of a valid export: the shipped file when there is one (``onnx_path`` then
        points at it, and ``backbone_path`` at its backbone's for a head), else the cached export, exporting (torch)
        when it is missing or damaged."""
        shipped = (shipped_onnx(self.name, hasher=_file_hash) if _input_size(self.name) == _shipped_size(self.name)
                   else None)
        if shipped is not None:
            self.onnx_path = shipped[0]
            if "backbone_onnx" in shipped[1]:
                self.backbone_path = Path(shipped[1]["backbone_onnx"])
            return shipped[1]
        if self.meta_path.exists():
            try:
                meta = json.loads(self.meta_path.read_text())
                if sha256_file(str(self.onnx_path)) == meta["onnx_sha256"]:
                    return meta
                note(f"{self.onnx_path}: damaged cache file; exporting the model again")
            except (OSError, ValueError, KeyError, TypeError):
                note(f"{self.meta_path}: damaged cache file; exporting the model again")
        return self.export()

    def export(self) -> dict:
        """Export the torch embedder to ONNX (batch size free) and record what it is."""
        if not torch_available():
            raise RuntimeUnavailable(f"{self.name}: not shipped as a compiled model; exporting it needs torch "
                                     f"(pip install 'lookalike[train]')")
        try:
            data, meta = export_onnx(self.name)
        except RuntimeError as exc:  # an operator the exporter lacks: this model runs on torch
            raise RuntimeUnavailable(str(exc)) from None
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.onnx_path) as tmp:
            Path(tmp).write_bytes(data)
        atomic_write_text(self.meta_path, json.dumps(meta, indent=1))
        return meta


def _shipped_size(name: str) -> int | None:
    """The input size of a shipped name's export (its card's; a head or Siamese model: its own, None here)."""
    card = get_card(name)
    return card.input_size if card is not None else None


def list_models() -> dict[str, str]:
    """Embedder names that run here, with a one-line description: every registered one where torch is installed,
    else (the core install) the shipped ONNX exports."""
    if torch_available():
        from .embedders import list_embedders

        return list_embedders()
    from .export import SHIPPED_ONNX

    return {name: card.description for card in cards("backbone", "siamese", "projection-head")
            for name in (card.name, *card.aliases) if card.name in SHIPPED_ONNX and shipped_onnx(name) is not None}


def torch_available() -> bool:
    """Whether torch can be imported here (the ``train`` extra is installed), found without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _read_blob(path: Path) -> bytes | None:
    """A compiled model written by ``_write_blob``; None (with a note) when missing or damaged."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    head, _, data = raw.partition(b"\n")
    if head.decode("ascii", "replace") != hashlib.sha256(data).hexdigest():
        note(f"{path}: damaged cache file; compiling the model again")
        return None
    return data


def _write_blob(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(hashlib.sha256(data).hexdigest().encode() + b"\n" + data)


def compile_cached(core: Any, blob: Path, config: dict, build: Callable[[], Any]) -> Any:
    """An OpenVINO model compiled for the CPU: imported from ``blob`` when that holds a good one, else ``build()``
    (a model to compile) compiled and saved there; a damaged or foreign cache file is replaced with a note."""
    data = _read_blob(blob) if blob.exists() else None
    if data is not None:
        try:
            return core.import_model(data, "CPU", config)
        except Exception:  # written by another build of the plugin: compile again
            note(f"{blob}: unusable cache file; compiling the model again")
    compiled = core.compile_model(build(), "CPU", config)
    out = compiled.export_model()
    _write_blob(blob, out.getvalue() if isinstance(out, io.BytesIO) else bytes(out))
    return compiled


def import_runtime(runtime: str) -> Any:
    """The runtime's Python module; RuntimeUnavailable when it does not import here."""
    label = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}[runtime]
    try:
        return importlib.import_module(runtime)
    except ImportError as exc:
        raise RuntimeUnavailable(f"{label} is not available ({exc}); pip install {runtime}") from None


def _openvino(ov: Any, entry: _Entry, meta: dict, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    core = ov.Core()
    caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if precision == "bf16" and "BF16" not in caps:
        raise RuntimeUnavailable(f"this CPU has no bf16 in OpenVINO (it offers {', '.join(caps)}); use --precision fp32")
    config = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY"}
    blob = entry.dir / f"openvino-{_version('openvino')}-{precision}-{_graph_key(meta)[:12]}.blob"

    def build() -> Any:
        model = core.read_model(str(entry.onnx_path))
        if entry.backbone_path is not None:
            model = _join(ov, core.read_model(str(entry.backbone_path)), model)
        return _quantize(model, meta) if precision == "int8" else model

    compiled = compile_cached(core, blob, config, build)
    request = compiled.create_infer_request()
    output = compiled.output(0)
    return lambda x: request.infer({0: x})[output]


def _graph_key(meta: dict) -> str:
    """The sha256 that names the network: the ONNX file's, or for a head on a shipped backbone both files'."""
    if "backbone_onnx_sha256" not in meta:
        return meta["onnx_sha256"]
    return hashlib.sha256(f"{meta['backbone_onnx_sha256']}+{meta['onnx_sha256']}".encode()).hexdigest()


def _join(ov: Any, backbone: Any, head: Any) -> Any:
    """One OpenVINO model: ``backbone``'s input through ``backbone`` and then ``head`` (whose one input takes the
    backbone's one output), the network the whole model's single export was."""
    (param,) = head.get_parameters()
    (result,) = backbone.get_results()
    for target in list(param.output(0).get_target_inputs()):
        target.replace_source_output(result.input_value(0))
    return ov.Model(head.get_results(), backbone.get_parameters(), head.get_friendly_name())


def _quantize(model: Any, meta: dict) -> Any:
    """NNCF post-training int8 quantization, calibrated on the sample photos."""
    try:
        import nncf
    except ImportError:
        raise RuntimeUnavailable("int8 needs NNCF (pip install 'lookalike[int8]'); use --precision fp32") from None
    from lookalike.data.photos import calibration_photos

    pre = PreprocessConfig.from_dict(meta["preprocess"])
    items = [pre.normalize(pre.to_uint8(im)[None]) for im in calibration_photos()]
    return nncf.quantize(model, nncf.Dataset(items), subset_size=len(items))


def _onnxruntime(ort: Any, entry: _Entry, precision: str) -> Callable[[np.ndarray], np.ndarray]:
    if precision != "fp32":
        raise RuntimeUnavailable(f"ONNX Runtime runs fp32 here, not {precision}; use --runtime openvino")
    session = ort.InferenceSession(str(entry.onnx_path), providers=["CPUExecutionProvider"])
    if entry.backbone_path is None:
        return lambda x: session.run(None, {"x": x})[0]
    backbone = ort.InferenceSession(str(entry.backbone_path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": backbone.run(None, {"x": x})[0]})[0]


def compiled_embedder(name: str, runtime: str, precision: str) -> CompiledEmbedder:
    """``name`` run by ``runtime`` ("openvino" or "onnxruntime") at ``precision``, from the cache when it is there."""
    key = (str(cache_dir()), name, runtime, precision)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        module = import_runtime(runtime)
        entry = _Entry(name)
        meta = entry.meta()
        infer = (_openvino(module, entry, meta, precision) if runtime == "openvino"
                 else _onnxruntime(module, entry, precision))
        emb = CompiledEmbedder(name, meta["dim"], PreprocessConfig.from_dict(meta["preprocess"]), runtime, precision,
                               infer)
        _LOADED[key] = emb
        return emb


def cuda_embedder(name: str) -> EmbedderLike | None:
    """The torch embedder ``name`` on a CUDA GPU, or None where there is none (checked without importing torch
    when no NVIDIA driver is loaded)."""
    if not os.path.exists("/proc/driver/nvidia/version"):
        return None
    import torch

    from .embedders import get_embedder

    return get_embedder(name, cache=False).to("cuda") if torch.cuda.is_available() else None


_BF16: list[bool] = []


def bf16_available() -> bool:
    """Whether OpenVINO imports here and offers bf16 on this CPU (AVX512-BF16 / AMX); checked once."""
    if not _BF16:
        try:
            caps = import_runtime("openvino").Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            _BF16.append("BF16" in caps)
        except Exception:  # no OpenVINO, or a plugin that cannot answer: fp32
            _BF16.append(False)
    return _BF16[0]


def default_precision(name: str, runtime: str = "auto") -> str:
    """The precision of a new index: bf16 when the model keeps its accuracy in bf16 (its card says so, from a
    measurement) and OpenVINO runs bf16 on this CPU; fp32 otherwise."""
    card = get_card(name)
    if card is not None and card.bf16 and runtime in ("auto", "openvino") and bf16_available():
        return "bf16"
    return "fp32"


def load_embedder(name: str, runtime: str = "auto", precision: str = "fp32",
                  note: Callable[[str], None] = note) -> EmbedderLike:
    """The embedder ``name`` on ``runtime``: a :class:`CompiledEmbedder`, or the torch embedder for "torch".

    "auto" takes OpenVINO when it works here, else torch with a one-line ``note``; RuntimeUnavailable when the
    runtime or precision asked for cannot run."""
    if runtime not in RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime '{runtime}'; use one of {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise RuntimeUnavailable(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    if runtime != "torch":
        try:
            return compiled_embedder(name, "openvino" if runtime == "auto" else runtime, precision)
        except RuntimeUnavailable as exc:
            if runtime != "auto" or precision != "fp32" or not torch_available():
                raise
            note(f"{exc}; using torch")
    elif precision != "fp32":
        raise RuntimeUnavailable(f"precision {precision} needs --runtime openvino")
    elif not torch_available():
        raise RuntimeUnavailable("--runtime torch needs torch: pip install 'lookalike[train]'")
    from .embedders import get_embedder

    return get_embedder(name)
