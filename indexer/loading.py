"""Open any image file the way a person sees it: EXIF orientation, any mode to RGB, alpha on white.

Every failure is an :class:`ImageLoadError` whose ``reason`` is one short line.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import struct
import threading
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from lookalike.errors import LookalikeError

__all__ = [
    "ImageLoadError",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "supported_extensions",
    "load_image",
    "load_image_and_hash",
    "load_image_hashed",
    "open_image_bytes",
    "to_rgb",
    "sha256_file",
    "describe_path",
    "read_regular_file",
    "image_from_array",
    "heif_missing_reason",
    "MAX_QUERY_BYTES",
    "DEFAULT_MAX_DECODE_BYTES",
    "decode_bytes",
    "release_memory",
]

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey
Image.MAX_IMAGE_PIXELS = None  # our own, configurable limit below gives a clear reason instead

DEFAULT_MAX_PIXELS = 200_000_000
MAX_QUERY_BYTES = 256 * 2**20  # a query or upload larger than this is refused (the largest real photos are ~100 MB)
# the memory one decode may take (its pixels in PIL's layout plus the copies made from them, see decode_bytes): a
# bomb under the pixel limit (a 190 KB PNG of 14000x14000, a 38-byte WebP) is refused with this reason, a JPEG is
# decoded at a reduced DCT scale that fits. 512 MB decodes an RGB or RGBA picture up to ~130 MP, a greyscale one up
# to ~500 MP, a palette one up to ~100 MP (its conversion is not reduced first).
DEFAULT_MAX_DECODE_BYTES = 512 * 2**20
# decodes that may take more than this wait for _BIG_DECODE_SLOTS: threads of one process (the HTTP server, the web
# app) never hold two such decodes at once, and the memory is handed back to the system after each
_BIG_DECODE = 64 * 2**20
_BIG_DECODE_SLOTS = threading.BoundedSemaphore(1)
# ... and such a picture is brought down (PIL's box ``reduce``, by a whole factor) to a shorter side of 2048-4095 px
# before any other copy is made: every use (embedding, signatures, thumbnails up to 1024 px) needs far less, so a
# search or an indexing worker never holds more than that after the decode
REDUCED_SIDE = 2048
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


def heif_missing_reason(path: str) -> str | None:
    """Why a HEIC/AVIF file cannot be read here (the optional extra is missing), else None."""
    if os.path.splitext(path)[1].lower() in _HEIF_EXTENSIONS and not _heif_available():
        return "HEIC/AVIF needs the heif extra: pip install 'lookalike[heif]'"
    return None


def supported_extensions() -> frozenset[str]:
    """File extensions the scanner picks up (HEIC/AVIF only with the ``heif`` extra)."""
    return IMAGE_EXTENSIONS | _HEIF_EXTENSIONS if _heif_available() else IMAGE_EXTENSIONS


class ImageLoadError(LookalikeError):
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
        arr = np.asarray(im)  # one copy in the image's own type; the float64 scaling runs a band of rows at a time
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        out = np.zeros(arr.shape, np.uint8)
        if hi > lo:
            step = max(1, (1 << 20) // max(1, arr.shape[1]))
            for r in range(0, arr.shape[0], step):
                band = (arr[r:r + step].astype(np.float64) - lo) / (hi - lo) * 255.0
                out[r:r + step] = np.clip(band + 0.5, 0, 255).astype(np.uint8)
        del arr
        return Image.fromarray(out, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("L", "RGB") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        return ImageOps.invert(im.convert("RGB")) if im.info.get("adobe_transform") == -1 else im.convert("RGB")
    return im.convert("RGB")


def open_image_bytes(data: bytes, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS,
                     draft_size: int | None = None, max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES) -> Image.Image:
    """Decode image bytes (e.g. an upload) to RGB with EXIF orientation applied."""
    if not data:
        raise ImageLoadError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels, draft_size, max_decode_bytes)


# bytes per pixel of each PIL mode as PIL holds it in memory (several bands take 4 bytes a pixel)
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


_REDUCIBLE = ("L", "RGB", "CMYK", "RGBA", "LA", "I", "F")  # modes PIL's reduce() averages (not palette, 1-bit, 16-bit)


def decode_bytes(mode: str, width: int, height: int, transparency: bool = False, reduced: bool = False) -> int:
    """The memory decoding an image of this PIL mode and size to RGB takes at its peak: its pixels in PIL's layout,
    the RGB copy, and the compositing copies of a picture with alpha (16-bit and float pixels included).
    ``reduced``: a big picture of a mode PIL can average down is reduced (see REDUCED_SIDE) before any conversion."""
    px = int(width) * int(height)
    raw = _MODE_BYTES.get(mode, 4)
    if mode == "RGB" and not transparency:
        convert = 0
    elif mode in _ALPHA_MODES or transparency:  # an RGBA copy, a white RGBA, the composite, then RGB
        convert = 16
    else:
        convert = 4
    if reduced and mode in _REDUCIBLE and not transparency and min(width, height) >= 2 * REDUCED_SIDE:
        factor = min(width, height) // REDUCED_SIDE
        small = -(-int(width) // factor) * -(-int(height) // factor)
        return px * raw + small * (raw + convert)
    return px * (raw + convert)


def _reduced(im: Image.Image) -> Image.Image:
    """A big picture averaged down by a whole factor to a shorter side of REDUCED_SIDE..2*REDUCED_SIDE-1 px."""
    factor = min(im.size) // REDUCED_SIDE
    if factor < 2:
        return im
    info = dict(im.info)
    out = im.reduce(factor)
    out.info.update(info)  # the EXIF orientation still applies
    return out


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc keeps large freed blocks otherwise); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _fit_decode(im: Image.Image, name: str, draft_size: int | None, max_decode_bytes: int | None) -> int:
    """Draft a JPEG to ``draft_size`` and to the scale whose decode fits ``max_decode_bytes``; refuse an image that
    cannot be decoded within it. Returns the bytes the decode will take."""
    w, h = im.size
    cost = decode_bytes(im.mode, w, h, "transparency" in im.info, reduced=True)
    want = (draft_size, draft_size) if draft_size and im.format == "JPEG" else None
    if im.format in ("JPEG", "MPO") and max_decode_bytes and cost > max_decode_bytes:
        # the smallest DCT scale whose RGB decode fits; draft() picks the largest scale keeping at least (w, h) // scale
        scale = next((s for s in (2, 4, 8) if decode_bytes("RGB", -(-w // s), -(-h // s)) <= max_decode_bytes), 8)
        fit = (max(1, w // scale), max(1, h // scale))
        want = fit if want is None else (min(want[0], fit[0]), min(want[1], fit[1]))
    if want:
        im.draft("RGB", want)
        cost = decode_bytes(im.mode, *im.size, reduced=True)
    if max_decode_bytes and cost > max_decode_bytes:
        raise ImageLoadError(name, f"too large to decode: {w}x{h} {im.mode} {im.format or ''} needs about "
                                   f"{cost / 2**20:,.0f} MB, over the {max_decode_bytes / 2**20:,.0f} MB decode limit "
                                   f"(decompression bomb guard)".replace("  ", " "))
    return decode_bytes(im.mode, *im.size, "transparency" in im.info)  # what it would take without reducing


def _decode(fp, name: str, max_pixels: int, draft_size: int | None,
            max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES) -> Image.Image:
    _heif_available()
    big = False
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
            big = _fit_decode(im, name, draft_size, max_decode_bytes) > _BIG_DECODE
            if big:
                _BIG_DECODE_SLOTS.acquire()
            im.load()
            turned = im.getexif().get(0x0112) in (5, 6, 7, 8)  # the EXIF orientation swaps width and height
            if big and im.mode in _REDUCIBLE and "transparency" not in im.info:
                im = _reduced(im)
            ImageOps.exif_transpose(im, in_place=True)  # not a copy of a big picture
            if turned:  # report the original size the way the picture is seen
                w, h = h, w
            out = _reduced(to_rgb(im)) if big else to_rgb(im)
            im = None
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
    finally:
        if big:
            im = None  # the decoded pixels (the caller holds only the RGB copy)
            _BIG_DECODE_SLOTS.release()
            release_memory()


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


def _open_regular(path: str | os.PathLike, name: str, max_bytes: int | None = None):
    """Open a regular file for reading without blocking: pipes, devices and folders are refused before any
    read (a FIFO would hang, /dev/zero would never end), and so is a file over ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageLoadError(name, _os_reason(exc)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a pipe" if stat.S_ISFIFO(st.st_mode) else \
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket or special file"
            raise ImageLoadError(name, f"not a regular file ({kind})")
        if st.st_size == 0:
            raise ImageLoadError(name, "empty file (0 bytes)")
        if max_bytes is not None and st.st_size > max_bytes:
            raise ImageLoadError(name, f"file too large ({st.st_size / 2**20:.0f} MB; the limit is {max_bytes / 2**20:.0f} MB)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular_file(path: str | os.PathLike, max_bytes: int = MAX_QUERY_BYTES) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``; ImageLoadError (one line) otherwise."""
    name = describe_path(path)
    with _open_regular(path, name, max_bytes) as fh:
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise ImageLoadError(name, _os_reason(exc)) from None
    if len(data) > max_bytes:  # grew while being read
        raise ImageLoadError(name, f"file too large (over the {max_bytes / 2**20:.0f} MB limit)")
    return data


def _readable_name(path: str | os.PathLike) -> str:
    """The path as messages show it; ImageLoadError when its format cannot be read here (HEIF without the extra)."""
    name = describe_path(path)
    missing = heif_missing_reason(name)
    if missing:
        raise ImageLoadError(name, missing)
    return name


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Open ``path`` as an RGB PIL image or raise :class:`ImageLoadError` with a one-line reason.

    ``draft_size`` lets JPEG decoding skip detail smaller than needed (much faster for big photos).
    """
    name = _readable_name(path)
    with _open_regular(path, name) as fh:
        try:
            return _decode(fh, name, max_pixels, draft_size)
        except OSError as exc:
            raise ImageLoadError(name, _os_reason(exc)) from None


def load_image_and_hash(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
                        max_bytes: int = MAX_QUERY_BYTES, draft_size: int | None = None) -> tuple[Image.Image, str]:
    """Read a file once: its RGB image and the sha256 of its bytes (for queries, which may be indexed).
    ``draft_size`` decodes a JPEG at the smallest DCT scale still at least that large, as indexing does."""
    name = _readable_name(path)
    data = read_regular_file(path, max_bytes)
    return (open_image_bytes(data, name=name, max_pixels=max_pixels, draft_size=draft_size),
            hashlib.sha256(data).hexdigest())


_SIMPLEJPEG: list = []
# PIL's Image.transpose method that shows a picture stored with this EXIF orientation (as ImageOps.exif_transpose)
_ORIENT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def _scaled_jpeg(data: bytes, max_pixels: int, draft_size: int) -> Image.Image | None:
    """A colour JPEG decoded by simplejpeg (libjpeg-turbo) at the smallest DCT scale still at least ``draft_size``
    both ways, EXIF orientation applied: the pixels PIL's ``draft`` gives, about 10% sooner at phone sizes
    (docs/benchmarks.md section 13). None for anything else (another format or colour space, over the pixel limit,
    any decoder complaint, simplejpeg not installed): the caller decodes it with PIL, which names what is wrong."""
    if not _SIMPLEJPEG:
        try:
            import simplejpeg

            _SIMPLEJPEG.append(simplejpeg)
        except ImportError:
            _SIMPLEJPEG.append(None)
    sj = _SIMPLEJPEG[0]
    if sj is None or data[:3] != b"\xff\xd8\xff":
        return None
    try:
        h, w, colorspace, _ = sj.decode_jpeg_header(data)
        if colorspace != "YCbCr" or w <= 0 or h <= 0 or (max_pixels and w * h > max_pixels):
            return None
        # the DCT scale PIL's draft takes (1/8, 1/4, 1/2 or none; libjpeg-turbo could also do 3/8, 5/8, ...)
        ratio = min(w // draft_size, h // draft_size)
        step = next((x for x in (8, 4, 2) if ratio >= x), 1)
        dw, dh = -(-w // step), -(-h // step)
        if dw * dh * 3 > _BIG_DECODE:  # PIL's path brings such a picture down first (_reduced)
            return None
        arr = sj.decode_jpeg(data, "RGB", min_height=dh, min_width=dw, min_factor=step)
        if arr.shape[:2] != (dh, dw):
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            orientation = Image.open(io.BytesIO(data)).getexif().get(0x0112)  # reads the header only
    except (ValueError, OSError, SyntaxError, struct.error, UnidentifiedImageError):
        return None
    im = Image.fromarray(arr, "RGB")
    if orientation in _ORIENT:
        im = im.transpose(_ORIENT[orientation])
    im.info["original_size"] = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    return im


def load_image_hashed(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
                      draft_size: int | None = None) -> tuple[Image.Image, str]:
    """An image file's RGB image and the sha256 of exactly the bytes decoded (for indexing: a file rewritten
    between hashing and decoding shows as another hash, never as the old hash with the new picture)."""
    name = _readable_name(path)
    with _open_regular(path, name) as fh:
        try:
            if os.fstat(fh.fileno()).st_size <= MAX_QUERY_BYTES:  # nearly every file: read once, hash and decode
                data = fh.read(MAX_QUERY_BYTES + 1)
                if len(data) <= MAX_QUERY_BYTES:
                    im = _scaled_jpeg(data, max_pixels, draft_size) if draft_size else None
                    if im is None:
                        im = _decode(io.BytesIO(data), name, max_pixels, draft_size)
                    return im, hashlib.sha256(data).hexdigest()
                fh.seek(0)
            im = _decode(fh, name, max_pixels, draft_size)  # a huge file: decoded, then hashed from the same handle
            fh.seek(0)
            h = hashlib.sha256()
            while chunk := fh.read(1 << 20):
                h.update(chunk)
            return im, h.hexdigest()
        except OSError as exc:
            raise ImageLoadError(name, _os_reason(exc)) from None


def image_from_array(arr: np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """An RGB image from an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array: uint8, or floats in 0..1 or 0..255."""
    name = "<array>"
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError(name, f"an image array has shape (H, W) or (H, W, 1|3|4), not {arr.shape}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise ImageLoadError(name, f"invalid dimensions {w}x{h}")
    if max_pixels and h * w > max_pixels:
        raise ImageLoadError(name, f"too large: {w}x{h} exceeds the limit of {max_pixels:,} pixels")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageLoadError(name, f"unsupported array type {arr.dtype}")
    if arr.dtype != np.uint8:
        a = arr.astype(np.float64)
        if not np.isfinite(a).all():
            raise ImageLoadError(name, "array holds NaN or infinite values")
        a = a * 255.0 if a.max(initial=0.0) <= 1.0 else a
        arr = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    return to_rgb(Image.fromarray(np.ascontiguousarray(arr)))


def sha256_file(path: str | os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a regular file's content; failures are :class:`ImageLoadError`."""
    h = hashlib.sha256()
    name = describe_path(path)
    with _open_regular(path, name) as fh:
        try:
            while chunk := fh.read(bufsize):
                h.update(chunk)
        except OSError as exc:
            raise ImageLoadError(name, _os_reason(exc)) from None
    return h.hexdigest()


def describe_path(path: str | os.PathLike) -> str:
    """A printable, one-line, valid UTF-8 form of any path: undecodable bytes and control characters
    (a newline in a name) are shown as backslash escapes. Printing a described path again changes nothing."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)

