"""Layering runs one way: data <- indexer <- retrieval <- training, ui, commands; no module uses another's _private
names. Every module's imports are read with ``ast`` (at any depth, relative ones resolved, module names given as
strings to importlib included)."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from helpers import ROOT

# lookalike/ modules that are commands (the top layer, with the package's own facade); the rest of lookalike/ is the
# base layer (fsutil, argtypes, ...) that every layer may use and that uses nothing else
COMMANDS = {"lookalike", "lookalike.__main__", "lookalike.cli", "lookalike.commands", "lookalike.demo",
            "lookalike.duplicate_commands"}
COMMAND_PACKAGES = ("lookalike.bench.",)  # `lookalike bench copies|noisy`: benchmark commands
LOWER = {"base": set(), "data": {"base"}, "indexer": {"base", "data"}, "retrieval": {"base", "data", "indexer"},
         "training": {"base", "data", "indexer", "retrieval"}, "ui": {"base", "data", "indexer", "retrieval"}}


def package_dirs(root: Path) -> dict[str, Path]:
    """Import name -> source folder, from pyproject.toml's ``package-dir``."""
    cfg = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in cfg.items()}


def modules(root: Path) -> dict[str, Path]:
    """Every module of the lookalike packages: dotted name -> file."""
    out = {}
    for pkg, folder in package_dirs(root).items():
        for f in folder.rglob("*.py"):
            rel = f.relative_to(folder).with_suffix("").parts
            parts = rel[:-1] if rel[-1] == "__init__" else rel
            out[".".join((pkg, *parts))] = f
    return out


def layer(module: str) -> str | None:
    """The layer of a lookalike module (None outside the package)."""
    if module in COMMANDS or module == "lookalike.bench" or module.startswith(COMMAND_PACKAGES):
        return "commands"
    parts = module.split(".")
    if parts[0] != "lookalike":
        return None
    if len(parts) > 1 and parts[1] in LOWER:
        return parts[1]
    return "base"


def imports(name: str, path: Path, known: set[str]) -> list[tuple[int, str, str | None]]:
    """(line, module, name or None) for every import in a module (relative ones resolved) and every ``module.name``
    read through an imported module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    out, bound = [], {}  # bound: local name -> lookalike module it names
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names]
            bound.update({a.asname: a.name for a in node.names if a.asname})
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((node.lineno, sub, None) if sub in known else (node.lineno, base, a.name))
                if sub in known:
                    bound[a.asname or a.name] = sub
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value
              and node.value in known and id(node) not in docstrings):
            out.append((node.lineno, node.value, None))  # importlib.import_module("lookalike.x")
    for node in ast.walk(tree):  # module._name
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            out.append((node.lineno, bound[node.value.id], node.attr))
    return sorted(set(out), key=lambda t: (t[0], t[1], t[2] or ""))


def forbidden_edges(root: Path) -> list[str]:
    """One line per import that breaks the layering or reaches for another module's ``_private`` name."""
    mods = modules(root)
    known = set(mods)
    bad = []
    for name, path in sorted(mods.items()):
        src = layer(name)
        where = path.relative_to(root)
        for line, target, attr in imports(name, path, known):
            dst = layer(target)
            if dst is not None and dst != src and src in LOWER and dst not in LOWER[src]:
                bad.append(f"{where}:{line}: {name} ({src}) imports {target} ({dst})")
            if attr and attr.startswith("_") and not attr.startswith("__") and target != name and dst is not None:
                bad.append(f"{where}:{line}: {name} imports the private name {target}.{attr}")
    return list(dict.fromkeys(bad))  # one line per edge, not per imported name


def test_layering_one_way_and_no_private_imports():
    bad = forbidden_edges(ROOT)
    print("\n".join(bad))
    assert not bad, f"{len(bad)} forbidden import(s):\n" + "\n".join(bad)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


def test_checker_finds_planted_edges(tmp_path):
    root = _tree(tmp_path, {
        "data/__init__.py": "",
        "data/clean.py": "from lookalike.fsutil import atomic_write\nfrom . import other\n",
        "data/other.py": '"""lookalike.retrieval.engine is named in a docstring only."""\n',
        "data/leaky.py": "def f():\n    import lookalike.retrieval.engine\n",             # inside a function
        "indexer/__init__.py": "",
        "indexer/up.py": "from ..retrieval import engine\n",                                  # relative, upward
        "indexer/dyn.py": 'import importlib\nimportlib.import_module("lookalike.training.trainer")\n',
        "retrieval/__init__.py": "",
        "retrieval/engine.py": "from lookalike.indexer.pipeline import _warn\nfrom ._impl import run\n",
        "retrieval/_impl.py": "def run(): ...\n",
        "training/__init__.py": "", "training/trainer.py": "from lookalike.retrieval.engine import Engine\n",
        "training/plots.py": "from lookalike.retrieval import engine as e\ne._impl\ne.Engine\n",
        "ui/__init__.py": "", "ui/page.py": "from lookalike.commands import main\n",
        "indexer/pipeline.py": "def _warn(): ...\n",
        "lookalike/__init__.py": "", "lookalike/fsutil.py": "import os\n", "lookalike/commands.py": "",
    })
    bad = forbidden_edges(root)
    assert len(bad) == 6, bad
    joined = "\n".join(bad)
    assert "data/leaky.py:2: lookalike.data.leaky (data) imports lookalike.retrieval.engine (retrieval)" in joined
    assert "indexer/up.py:1: lookalike.indexer.up (indexer) imports lookalike.retrieval.engine (retrieval)" in joined
    assert "indexer/dyn.py:2:" in joined and "lookalike.training.trainer (training)" in joined
    assert "retrieval/engine.py:1: lookalike.retrieval.engine imports the private name lookalike.indexer.pipeline._warn" in joined
    assert "training/plots.py:2: lookalike.training.plots imports the private name lookalike.retrieval.engine._impl" in joined
    assert "ui/page.py:1: lookalike.ui.page (ui) imports lookalike.commands (commands)" in joined
