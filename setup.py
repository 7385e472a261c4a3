"""The build step of the wheel: before the package data is copied, the shipped embedders are exported to ONNX
(``python -m lookalike.retrieval.export``: retrieval/weights/onnx/, skipped when already exported from the same
checkpoints), so that the core install indexes and searches without torch. Everything else is in pyproject.toml."""
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithModels(build_py):
    """build_py that first brings retrieval/weights/onnx/ up to date (not for editable installs, which export on
    first use)."""

    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            out = Path(__file__).resolve().parent / "retrieval" / "weights" / "onnx"  # in the tree being built
            res = subprocess.run([sys.executable, "-m", "lookalike.retrieval.export", "--out", str(out)],
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit("lookalike: the wheel ships its models as ONNX, exported from the checkpoints with "
                                 "torch: build it where lookalike[train] is installed (make wheel-check does) or run "
                                 "`python -m lookalike.retrieval.export` first: "
                                 + " ".join((res.stderr or res.stdout).split())[-300:])
            if res.stdout.strip():
                print(res.stdout.strip())
            self.__dict__.pop("data_files", None)  # list the package data again, the exports included
        super().run()


setup(cmdclass={"build_py": BuildWithModels})
