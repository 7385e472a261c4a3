"""Helpers shared by the tests (fixtures stay in conftest.py): real photos, sample data, index checks."""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import sqlite3
import subprocess
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from PIL import Image

from lookalike import Engine
from lookalike.data.samples import DataError, data_root, load_sample
from lookalike.ui import screenshots

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field", "immunohistochemistry",
          "moon", "clock"]


def have_samples() -> bool:
    """Both shared dataset samples (MNIST-5k, CIFAR-10) are on disk."""
    r = data_root()
    return (r / "mnist-5k.npz").is_file() and (r / "cifar10-sample.npz").is_file()


needs_samples = pytest.mark.skipif(not have_samples(), reason=f"shared dataset samples not found under {data_root()} (set LOOKALIKE_DATA)")


def sample_or_skip(name: str, split: str = "test"):
    """The offline sample split, or skip the test with the reason it is missing."""
    try:
        return load_sample(name, split)
    except DataError as exc:
        pytest.skip(f"sample data missing: {exc}")


def save_rgb(im: Image.Image, path: Path, **kw) -> Path:
    """Save ``im`` (as RGB for JPEG), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg") and im.mode != "RGB":
        im = im.convert("RGB")
    im.save(path, **kw)
    return path


def exif_rotated_jpeg(im: Image.Image, path: Path, orientation: int = 6) -> Path:
    """Store the pixels rotated and an EXIF tag that tells viewers to rotate them back."""
    # Orientation 6 means: rotate 90 degrees clockwise to display. So store the image rotated counter-clockwise.
    stored = im.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif, quality=92)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def consistent(engine: Engine) -> None:
    """Database and FAISS agree: same ids, no duplicate content, every file points at a stored image."""
    con = sqlite3.connect(engine.root / "metadata.db")
    db_ids = {r[0] for r in con.execute("select id from images")}
    shas = [r[0] for r in con.execute("select sha256 from images")]
    orphans = con.execute("select count(*) from files where image_id not in (select id from images)").fetchone()[0]
    empty = con.execute("select count(*) from images where id not in (select image_id from files)").fetchone()[0]
    con.close()
    assert len(shas) == len(set(shas)), "duplicate content rows"
    assert orphans == 0 and empty == 0
    assert set(int(i) for i in engine.index.visible_ids()) == db_ids


def class_subset(data, per_class: int, tag: str = ""):
    """The first ``per_class`` images of every class of a labelled ``ImageSet`` (``tag``: its cache fingerprint)."""
    from lookalike.training.datasets import ImageSet

    keep = np.concatenate([np.flatnonzero(data.labels == c)[:per_class] for c in np.unique(data.labels)])
    return ImageSet([data.images[i] for i in keep], data.labels[keep], data.classes, data.name, tag)


# ---------------------------------------------------------------------------- the web UI (AppTest, Chromium)
TIMEOUT = 120
PAGE_SCRIPT = "from lookalike.ui import {0}\n{0}.render()\n"


def page(name: str):
    """An AppTest of one UI page module."""
    from streamlit.testing.v1 import AppTest

    return AppTest.from_string(PAGE_SCRIPT.format(name), default_timeout=TIMEOUT)


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def no_exception(at) -> None:
    assert not at.exception, [e.value for e in at.exception]


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [s.value for s in at.subheader]
    return "\n".join(str(p) for p in parts)


CHROMIUM_ARGS = screenshots.CHROMIUM_ARGS  # --no-sandbox, --headless, no background networking


def find_chromium() -> str | None:
    for c in (os.environ.get("LOOKALIKE_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser",
              shutil.which("chromium"), shutil.which("chromium-browser")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def wait_idle(page, timeout_ms: int = 180_000) -> None:
    """Until the app's script run has finished (Streamlit marks it on the app element)."""
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached",
                           timeout=timeout_ms)


@contextlib.contextmanager
def ui_server(db: Path, *args: str) -> Iterator[str]:
    """``lookalike ui --db db [args]`` on a free 127.0.0.1 port (``lookalike.ui.screenshots.ui_server``), its output
    in ``db.parent/server.log``; a server that does not come up fails the test with the end of that log."""
    with open(db.parent / "server.log", "w+") as log:
        try:
            with screenshots.ui_server(db, log=log, wait_s=90.0, args=args) as url:
                yield url
        except screenshots.UIServerError as exc:
            log.seek(0)
            raise AssertionError(f"{exc}\n{log.read()[-3000:]}") from None


# ---------------------------------------------------------------------------- image bombs (issue 23)
def png_bomb(width: int, height: int, bit_depth: int = 1, color_type: int = 0) -> bytes:
    """A PNG of ``width`` x ``height`` black pixels, written without ever holding them: a few hundred KB at most
    (14000x14000 at 1 bit is 24 KB). ``color_type``: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA."""
    import struct
    import zlib

    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = b"\0" + bytes((width * channels * bit_depth + 7) // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0))
            + (chunk(b"PLTE", b"\0\0\0") if color_type == 3 else b"") + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def webp_bomb(width: int, height: int) -> bytes:
    """A 38-byte lossless WebP of ``width`` x ``height`` pixels of one colour (a 16x16 one with its size changed:
    one-colour pixels take no bits, so it decodes at any size up to 16383x16383)."""
    import struct

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 40)).save(buf, "WEBP", lossless=True)
    data = buf.getvalue()
    at = data.index(b"VP8L") + 9
    head = struct.unpack("<I", data[at:at + 4])[0]
    return data[:at] + struct.pack("<I", (head & ~((1 << 28) - 1)) | (width - 1) | ((height - 1) << 14)) + data[at + 4:]


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` read-only for this process: a read-only bind mount as root, chmod otherwise."""
    if os.geteuid() == 0:
        view = folder.parent / (folder.name + "-ro")
        view.mkdir()
        r = subprocess.run(["mount", "--bind", str(folder), str(view)], capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot bind-mount as root here: {r.stderr.strip()}")
        try:
            if subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], capture_output=True).returncode:
                pytest.skip("cannot remount read-only here")
            yield view
        finally:
            subprocess.run(["umount", str(view)], check=True)
    else:
        modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield folder
        finally:
            for p, m in modes.items():
                p.chmod(m)
