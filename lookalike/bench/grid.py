"""Picture grids for the benchmark docs: originals, their edited / noisy queries, and what each method found."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from lookalike.data.edits import apply_edit, apply_noise

__all__ = ["picture_grid", "copies_grid", "noisy_grid"]

CELL = 150
GREEN, RED, GREY = (40, 160, 60), (200, 40, 40), (150, 150, 150)


def picture_grid(rows: list[tuple[str, list[tuple[Image.Image | None, str, tuple]]]], path: Path, title: str) -> Path:
    """Save rows of (image, caption, border colour) cells, each row labelled on the left."""
    ncol = max(len(cells) for _, cells in rows)
    lab, top = 110, 24
    W, H = lab + ncol * CELL, top + len(rows) * (CELL + 16)
    canvas = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(canvas)
    d.text((4, 4), title, fill="black")
    for r, (label, cells) in enumerate(rows):
        y = top + r * (CELL + 16)
        d.text((4, y + CELL // 2), label, fill="black")
        for c, (im, cap, colour) in enumerate(cells):
            x = lab + c * CELL
            d.rectangle((x + 1, y + 1, x + CELL - 2, y + CELL - 2), outline=colour, width=3)
            if im is not None:
                t = im.convert("RGB")
                t.thumbnail((CELL - 10, CELL - 10))
                canvas.paste(t, (x + (CELL - t.width) // 2, y + (CELL - t.height) // 2))
            d.text((x + 4, y + CELL + 1), cap[:24], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def _found(gallery: Path, name: str) -> Image.Image | None:
    for p in (gallery / "photo" / f"{name}.jpg", gallery / "distractor" / f"{name}.png"):
        if p.is_file():
            with Image.open(p) as im:
                return im.convert("RGB")
    return None


def _shown(result: dict, extra: int) -> list[str]:
    """The first method, up to ``extra`` of its levers (the last ones), and imagededup PHash."""
    methods = list(result["methods"])
    own = [m for m in methods if not m.startswith("imagededup")]
    return own[:1] + own[1:][-extra:] * (extra > 0) + [m for m in methods if m == "imagededup-phash"]


def _method_rows(result: dict, picked: list[dict], methods: list[str]) -> list:
    gallery = Path(result["gallery"])
    rows = []
    for m in methods:
        cells = []
        for q in picked:
            name = q["top1"][m]
            ok = name == q["photo"]
            cells.append((_found(gallery, name), ("found" if ok else "miss: " + name), GREEN if ok else RED))
        rows.append((m.replace("efficientnet_", "")[:18], cells))
    return rows


def copies_grid(result: dict, photos: dict[str, Image.Image], path: Path, levers: int = 1) -> Path:
    """One column per edit kind (strong setting, photos in turn): original, edited copy, each method's top-1."""
    names = list(photos)
    picked = []
    for i, e in enumerate(result["edits"]):
        want = names[i % len(names)]
        picked += [q for q in result["queries"] if q["edit"] == e and q["strength"] == "strong" and q["photo"] == want][:1]
    # the edited copies are regenerated from the seeds the benchmark used
    cells_q = [(apply_edit(photos[q["photo"]], q["edit"], q["strength"], seed=q["seed"]), q["edit"], GREY) for q in picked]
    rows = [("original", [(photos[q["photo"]], q["photo"][-20:], GREY) for q in picked]), ("edited copy", cells_q)]
    rows += _method_rows(result, picked, _shown(result, levers))
    return picture_grid(rows, path, f"copies, {result['photo_set']} photos: strong edits and the top-1 found "
                                    "(green: the original)")


def noisy_grid(result: dict, photos: dict[str, Image.Image], path: Path, levers: int = 1) -> Path:
    """One column per noise level (photos in turn): original, noisy query, each method's top-1."""
    names = list(photos)
    picked, cells_q = [], []
    for i, lvl in enumerate(result["levels"]):
        want = names[i % len(names)]
        for q in result["queries"]:
            if q["level"] == lvl and q["photo"] == want:
                picked.append(q)
                cells_q.append((apply_noise(photos[want], lvl, seed=q["seed"]), lvl, GREY))
                break
    rows = [("original", [(photos[q["photo"]], q["photo"][-20:], GREY) for q in picked]), ("noisy query", cells_q)]
    rows += _method_rows(result, picked, _shown(result, levers))
    return picture_grid(rows, path, f"noisy photos, {result['photo_set']} set: top-1 found (green: the original)")

