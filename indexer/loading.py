"""Open any image file the way a person sees it: EXIF orientation, any mode to RGB, alpha on white.

Every failure is an :class:`ImageLoadError` whose ``reason`` is one short line.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageLoadError",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "supported_extensions",
    "load_image",
    "load_image_and_hash",
    "open_image_bytes",
    "to_rgb",
    "sha256_file",
    "describe_path",
]

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey
Image.MAX_IMAGE_PIXELS = None  # our own, configurable limit below gives a clear reason instead

DEFAULT_MAX_PIXELS = 200_000_000
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff"})
_HEIF_EXTENSIONS = frozenset({".heic", ".heif", ".avif"})
_heif_state: bool | None = None


def _heif_available() -> bool:
    """Register pillow-heif (HEIC/AVIF) when the optional extra is installed."""
    global _heif_state
    if _heif_state is None:
        try:
            import pillow_heif  # type: ignore

            pillow_heif.register_heif_opener()
            _heif_state = True
        except Exception:
            _heif_state = False
    return _heif_state


def supported_extensions() -> frozenset[str]:
    """File extensions the scanner picks up (HEIC/AVIF only with the ``heif`` extra)."""
    return IMAGE_EXTENSIONS | _HEIF_EXTENSIONS if _heif_available() else IMAGE_EXTENSIONS


class ImageLoadError(Exception):
    """An image that cannot be used; ``reason`` is a short human sentence."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; transparency is composited on white."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        return Image.fromarray(np.clip(scaled + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        return ImageOps.invert(im.convert("RGB")) if im.info.get("adobe_transform") == -1 else im.convert("RGB")
    return im.convert("RGB")


def open_image_bytes(data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS,
                     draft_size: int | None = None) -> Image.Image:
    """Decode image bytes (e.g. an upload) to RGB with EXIF orientation applied."""
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels, draft_size)


def _decode(fp, name: str, max_pixels: int, draft_size: int | None) -> Image.Image:
    _heif_available()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(fp)
            w, h = im.size
            if w <= 0 or h <= 0:
                raise ImageLoadError(name, f"invalid dimensions {w}x{h}")
            if max_pixels and w * h > max_pixels:
                raise ImageLoadError(
                    name, f"too large: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} (decompression bomb guard)"
                )
            if getattr(im, "is_animated", False):
                im.seek(0)
            if draft_size and im.format == "JPEG":
                im.draft("RGB", (draft_size, draft_size))
            drafted = im.size
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.size != drafted:  # rotated by 90/270 degrees: report the original size the same way
                w, h = h, w
            out = to_rgb(im)
            out.info["original_size"] = (w, h)
            return out
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(name, "not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(name, f"too large ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, ZeroDivisionError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            raise ImageLoadError(name, f"truncated or corrupt image data ({msg})") from None
        raise ImageLoadError(name, f"cannot decode image ({msg})") from None
    except MemoryError:
        raise ImageLoadError(name, "out of memory while decoding") from None


def _os_reason(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "file not found (deleted or broken symlink)"
    if exc.errno == errno.EISDIR:
        return "is a directory"
    return exc.strerror or str(exc)


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Open ``path`` as an RGB PIL image or raise :class:`ImageLoadError` with a one-line reason.

    ``draft_size`` lets JPEG decoding skip detail smaller than needed (much faster for big photos).
    """
    name = os.fsdecode(path)
    try:
        size = os.stat(path).st_size
        if size == 0:
            raise ImageLoadError(name, "empty file (0 bytes)")
        with open(path, "rb") as fh:
            return _decode(fh, name, max_pixels, draft_size)
    except ImageLoadError:
        raise
    except OSError as exc:
        raise ImageLoadError(name, _os_reason(exc)) from None


def load_image_and_hash(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, str]:
    """Read a file once: its RGB image and the sha256 of its bytes (for queries, which may be indexed)."""
    name = os.fsdecode(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ImageLoadError(name, _os_reason(exc)) from None
    return open_image_bytes(data, name=name, max_pixels=max_pixels), hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's content; OSError is turned into :class:`ImageLoadError`."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(bufsize):
                h.update(chunk)
    except OSError as exc:
        raise ImageLoadError(os.fsdecode(path), _os_reason(exc)) from None
    return h.hexdigest()


def describe_path(path: str | os.PathLike) -> str:
    """A printable, valid UTF-8 form of any path (undecodable bytes shown as escapes)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")

