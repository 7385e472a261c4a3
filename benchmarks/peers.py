"""The peers' environment for the benchmarks: a venv holding imagededup at a pinned version, made on first use
in the benchmark cache and layered on this interpreter's packages (torch, numpy, ... are reused, pip adds only
imagededup). ``use_imagededup()`` also points ``lookalike bench`` at it (``$LOOKALIKE_IMAGEDEDUP_PYTHON``); the
shipped command never installs anything itself.

    python -m benchmarks.peers          # make the venv now; prints its Python
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lookalike.settings import bench_cache_root

__all__ = ["IMAGEDEDUP", "imagededup_python", "use_imagededup", "peer_or_reason"]

IMAGEDEDUP = "imagededup==0.3.3.post2"  # the version every recorded peer figure was made with


def _imports(py: Path) -> bool:
    return py.is_file() and subprocess.run([str(py), "-c", "import imagededup"], capture_output=True).returncode == 0


def imagededup_python(log=None) -> Path:
    """The Python of the imagededup venv (``<bench cache>/imagededup-venv``), made on first use; SystemExit with a
    one-line reason when it cannot be made."""
    venv = bench_cache_root() / "imagededup-venv"
    py = venv / "bin" / "python"
    if _imports(py):
        return py
    print(f"benchmarks: creating {venv} with {IMAGEDEDUP} (once)", file=log or sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        ours = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
        Path(site, "_lookalike_base.pth").write_text("\n".join(ours) + "\n", encoding="utf-8")
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", IMAGEDEDUP], capture_output=True, text=True,
                             timeout=1800)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SystemExit(f"benchmarks: cannot create the imagededup venv {venv} ({exc})") from None
    if res.returncode != 0 or not _imports(py):
        raise SystemExit(f"benchmarks: pip install {IMAGEDEDUP} failed: "
                         f"{' '.join((res.stderr or res.stdout).strip().splitlines()[-1:])}")
    return py


def peer_or_reason(log=None) -> tuple[str | None, str]:
    """``imagededup_python`` as (its path, "ready"), or (None, the reason in one line) when it cannot be made."""
    try:
        return str(imagededup_python(log)), "ready"
    except SystemExit as exc:
        return None, str(exc)


def use_imagededup(log=None) -> Path:
    """The imagededup venv's Python, also set as ``$LOOKALIKE_IMAGEDEDUP_PYTHON`` for ``lookalike bench`` runs in
    this process."""
    py = imagededup_python(log)
    os.environ["LOOKALIKE_IMAGEDEDUP_PYTHON"] = str(py)
    return py


if __name__ == "__main__":
    print(imagededup_python())
