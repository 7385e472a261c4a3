"""Folder scanning: images found recursively, junk ignored, symlink trouble and odd names reported."""
from __future__ import annotations

import os

from lookalike.data.photos import load_photo
from lookalike.indexer.scan import ScanEntry, ScanProblem, scan


def _tree(tmp_path):
    root = tmp_path / "pics"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    img = load_photo("coffee").convert("RGB").resize((64, 48))
    for rel in ["a.jpg", "sub/b.png", "sub/deeper/c.webp", "sub/d.bmp", "e.tiff", "f.gif", ".hidden/h.png", "._a.jpg"]:
        img.save(root / rel)
    (root / ".DS_Store").write_bytes(b"junk")
    (root / "Thumbs.db").write_bytes(b"junk")
    (root / "notes.txt").write_text("not an image")
    return root


def test_scan_finds_images_and_ignores_junk(tmp_path):
    root = _tree(tmp_path)
    found = list(scan([root]))
    paths = sorted(os.path.relpath(e.path, root) for e in found if isinstance(e, ScanEntry))
    assert paths == ["a.jpg", "e.tiff", "f.gif", "sub/b.png", "sub/d.bmp", "sub/deeper/c.webp"]
    assert not [p for p in found if isinstance(p, ScanProblem)]
    e = next(x for x in found if x.path.endswith("a.jpg"))
    assert e.size == (root / "a.jpg").stat().st_size and e.mtime_ns == (root / "a.jpg").stat().st_mtime_ns


def test_symlinks_broken_and_looping(tmp_path):
    root = _tree(tmp_path)
    os.symlink(root / "nowhere.jpg", root / "broken.jpg")
    os.symlink(root / "loop2.jpg", root / "loop1.jpg")
    os.symlink(root / "loop1.jpg", root / "loop2.jpg")
    os.symlink(root, root / "sub" / "back-to-top")  # a folder loop
    os.symlink(root / "a.jpg", root / "alias.jpg")  # a good file symlink is indexed
    found = list(scan([root]))
    problems = {os.path.basename(p.path): p.reason for p in found if isinstance(p, ScanProblem)}
    assert problems["broken.jpg"].startswith("broken symlink")
    assert problems["loop1.jpg"] == "symlink loop" and problems["loop2.jpg"] == "symlink loop"
    assert "symlink loop" in problems["back-to-top"]
    entries = [e for e in found if isinstance(e, ScanEntry)]
    assert any(e.path.endswith("alias.jpg") for e in entries)
    assert len(entries) == len({e.path for e in entries}) == 7  # the loop did not scan anything twice


def test_non_utf8_name_is_reported(tmp_path):
    root = _tree(tmp_path)
    bad = os.path.join(os.fsencode(root), b"caf\xe9.jpg")
    with open(bad, "wb") as fh:
        fh.write((root / "a.jpg").read_bytes())
    problems = [p for p in scan([root]) if isinstance(p, ScanProblem)]
    assert len(problems) == 1
    assert problems[0].reason == "file name is not valid UTF-8"
    assert "caf\\xe9.jpg" in problems[0].path
    problems[0].path.encode("utf-8")  # printable and storable


def test_missing_root_raises(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError):
        list(scan([tmp_path / "does-not-exist"]))
