"""One place for lookalike's settings: the runtimes and precisions, the cache folders, and every ``LOOKALIKE_*``
environment variable (its name, its meaning, its default). Modules read the environment through the functions
here, at call time (a test or a front end may set a variable after import)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RUNTIMES", "PRECISIONS", "ENV", "env", "env_flag", "cache_root", "bench_cache_root", "data_dir"]

RUNTIMES = ("auto", "openvino", "onnxruntime", "torch")  # what runs a model (the index records none of them)
PRECISIONS = ("fp32", "bf16", "int8")                    # what an index's vectors are computed at

# every environment variable lookalike reads -> what it sets
ENV = {
    "LOOKALIKE_CACHE": "cache root for compiled models and training features (default $XDG_CACHE_HOME/lookalike "
                       "or ~/.cache/lookalike)",
    "LOOKALIKE_DATA": "folder holding the sample .npz files (default: the copies shipped in the package)",
    "LOOKALIKE_BENCH_CACHE": "working folder of `lookalike bench` (default ~/.cache/lookalike-bench)",
    "LOOKALIKE_IMAGEDEDUP_PYTHON": "a Python that can import imagededup, the peer of `lookalike bench` (default: "
                                   "this one, when imagededup is installed)",
    "LOOKALIKE_DB": "the index folder of `lookalike ui` (set by the command for the Streamlit app)",
    "LOOKALIKE_RUNTIME": "the runtime of `lookalike ui` (one of RUNTIMES)",
    "LOOKALIKE_UI_MODEL": "the model a new index of `lookalike ui` is built with",
    "LOOKALIKE_UI_READ_ONLY": "1: the web UI never writes to the index",
    "LOOKALIKE_UI_ALLOW_WRITE": "1: the web UI may index and remove",
    "LOOKALIKE_UI_ALLOW_ROOTS": "folders (os.pathsep-separated) the web UI may index",
    "LOOKALIKE_MAX_UPLOAD_MB": "upload cap of the web UI and the HTTP API in MB (default 20)",
    "LOOKALIKE_TOKEN": "bearer token of `lookalike serve` (kept out of the process list)",
    "LOOKALIKE_UI_SCREENSHOTS": "tests only: save the browser tests' screenshots to this folder",
    "LOOKALIKE_CHROMIUM": "tests only: the Chromium the browser tests launch (default: the Debian package's)",
}


def env(name: str, default: str | None = None) -> str | None:
    """The value of the ``LOOKALIKE_*`` variable ``name`` (one of ENV); an empty value counts as unset."""
    if name not in ENV:
        raise KeyError(f"{name} is not a lookalike setting (see lookalike.settings.ENV)")
    return os.environ.get(name) or default


def env_flag(name: str) -> bool:
    """Whether the variable ``name`` is set to anything but "", "0" or "false"."""
    return (env(name) or "") not in ("", "0", "false")


def cache_root() -> Path:
    """The one cache root: ``$LOOKALIKE_CACHE``, else ``$XDG_CACHE_HOME/lookalike`` or ``~/.cache/lookalike``
    (compiled models under ``models/``, training features under ``features/``)."""
    configured = env("LOOKALIKE_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "lookalike"


def bench_cache_root() -> Path:
    """``$LOOKALIKE_BENCH_CACHE`` or ``~/.cache/lookalike-bench``: downloads-free working data of the benchmarks."""
    return Path(env("LOOKALIKE_BENCH_CACHE") or Path.home() / ".cache" / "lookalike-bench")


def data_dir() -> Path | None:
    """``$LOOKALIKE_DATA`` (the sample files' folder) when set, else None (the package's own copies)."""
    configured = env("LOOKALIKE_DATA")
    return Path(configured).expanduser() if configured else None
