"""Shared fixtures: real photos from scikit-image, small real indexes. Shared helpers live in helpers.py."""
from __future__ import annotations

import os
import shutil
import weakref
from pathlib import Path

import pytest

from helpers import CHROMIUM_ARGS, PHOTOS, find_chromium, have_samples, save_rgb
from lookalike.data.photos import load_photo


@pytest.fixture(scope="session", autouse=True)
def model_cache():
    """Compiled models (retrieval/runtime.py) go to the repo's .pytest_cache, not the user's cache folder."""
    if os.environ.get("LOOKALIKE_CACHE"):
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOOKALIKE_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "lookalike-models"))
        yield


@pytest.fixture(autouse=True)
def close_engines(monkeypatch):
    """Every Engine a test opens is closed when the test ends, passed or failed (its database connections with it),
    so a failing test leaves no store open behind it. Engines of module-scoped fixtures are theirs to close."""
    from lookalike.retrieval.engine import Engine

    opened: list[weakref.ref] = []
    init = Engine.__init__

    def tracked(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        opened.append(weakref.ref(self))

    monkeypatch.setattr(Engine, "__init__", tracked)
    yield
    for ref in opened:
        engine = ref()
        if engine is not None:
            engine.close()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Real photos as PNG, one per scikit-image sample."""
    d = tmp_path_factory.mktemp("photos")
    for n in PHOTOS:
        save_rgb(load_photo(n), d / f"{n}.png")
    return d


@pytest.fixture
def photos(photo_dir, tmp_path) -> Path:
    """A private, writable copy of the photo folder."""
    return Path(shutil.copytree(photo_dir, tmp_path / "photos"))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for the module: on a shared 2-core machine, oversubscribed OpenMP threads are ~10x slower."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------------------- the web UI
@pytest.fixture(scope="module")
def image_tree(tmp_path_factory, photo_dir) -> Path:
    """~20 real images: scikit-image photos, CIFAR-10 samples in class folders, and one broken file."""
    root = tmp_path_factory.mktemp("uiimages")
    shutil.copytree(photo_dir, root / "photos")
    if have_samples():
        from lookalike.data.export import export_dataset

        export_dataset("cifar10", root / "cifar10", split="train", limit=10, progress=False)
    (root / "photos" / "broken.jpg").write_bytes(b"definitely not a jpeg")
    return root


@pytest.fixture(scope="module")
def pixels_db(image_tree, tmp_path_factory) -> Path:
    from lookalike.retrieval.engine import Engine

    db = tmp_path_factory.mktemp("uipixels") / "index"
    with Engine.open(db, model="pixels") as eng:
        eng.add([image_tree], progress=False, workers=0, warn=None)
    return db


@pytest.fixture
def use_db(monkeypatch):
    def _use(db: Path, **env) -> None:
        monkeypatch.setenv("LOOKALIKE_DB", str(db))
        for var in ("LOOKALIKE_UI_READ_ONLY", "LOOKALIKE_UI_ALLOW_WRITE", "LOOKALIKE_UI_ALLOW_ROOTS"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.delenv("LOOKALIKE_MAX_UPLOAD_MB", raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
    return _use


@pytest.fixture(scope="module")
def browser():
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no chromium binary (apt-get install chromium); .ci/run installs it where apt is available")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
