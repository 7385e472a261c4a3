"""Decoding for indexing, without torch: each file read once in a worker process gives the model's uint8 input, the
picture's size, its low-frequency signature and the sha256 of the bytes decoded; results come back in order, at most
a bounded number ahead of the consumer.

One decode serves everything: a JPEG is decoded at the smallest DCT scale still at least the input size (PIL's
``draft``, which at phone sizes is as fast as libjpeg-turbo's own scaled decoding, see docs/benchmarks.md), the EXIF
orientation is applied to that small picture, and the signature and the model input are both made from it.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from lookalike.errors import LookalikeError

from .loading import DEFAULT_MAX_PIXELS, ImageLoadError, load_image_hashed
from .signature import lowfreq_signature

TERMINATE_WAIT_S = 5.0  # how long a killed decoding worker is waited for

__all__ = ["Decoded", "DecodeStream", "DecodeWorkerDied", "decode_file", "decode_files"]


class DecodeWorkerDied(LookalikeError, RuntimeError):
    """A decoding process ended while it held a file (killed for memory, or a crash in a decoder)."""


@dataclass
class Decoded:
    """One file's decode: ``pixels`` (CHW uint8 at the model's input size) or ``reason`` (why it could not be)."""

    i: int                               # index into the paths asked for
    pixels: np.ndarray | None = None
    width: int = 0                       # the picture as seen (EXIF orientation applied), before any reduction
    height: int = 0
    signature: np.ndarray | None = None  # low-frequency signature (indexer.signature)
    sha256: str | None = None            # of exactly the bytes decoded
    reason: str | None = None


def decode_file(i: int, path: str, preprocess, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Read and decode one file for indexing; a failure comes back as ``reason`` (one line), never raised."""
    try:
        im, sha = load_image_hashed(path, max_pixels=max_pixels, draft_size=preprocess.input_size)
        w, h = im.info.get("original_size", im.size)
        return Decoded(i, preprocess.to_uint8(im), int(w), int(h), lowfreq_signature(im), sha)
    except ImageLoadError as exc:
        return Decoded(i, reason=exc.reason)
    except Exception as exc:  # a resize failing on a pathological image must not stop the run
        return Decoded(i, reason=f"cannot process image ({type(exc).__name__}: {exc})")


_JOB: dict = {}  # in a worker: the paths, preprocessing and pixel limit of the run (inherited by fork)


def _decode_index(i: int) -> Decoded:
    return decode_file(i, _JOB["paths"][i], _JOB["preprocess"], _JOB["max_pixels"])


def _quiet_lost_parent(exc_type, exc, tb, _default=sys.excepthook) -> None:
    """A worker's pipe breaks when the parent stops reading (Ctrl+C, SIGTERM): not worth a traceback."""
    if not issubclass(exc_type, (ConnectionError, EOFError, KeyboardInterrupt)):
        _default(exc_type, exc, tb)


def _worker_init() -> None:
    sys.excepthook = _quiet_lost_parent
    try:  # Linux: a decoding worker ends with its parent, even one killed by SIGKILL
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C stops the parent, which ends the pool
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (an interrupt, a traceback)
    except (OSError, AttributeError, ValueError):
        pass
    try:  # decoders fill the cores' idle moments; the model keeps priority
        os.nice(10)
    except OSError:
        pass


def _pool(workers: int):
    """``workers`` forked decoding processes (fork: they start at once and inherit the run's settings)."""
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return multiprocessing.get_context(method).Pool(workers, initializer=_worker_init)


class DecodeStream:
    """:func:`decode_files` with a look at how many results are already waiting (to size the next batch)."""

    def __init__(self, paths: Sequence[str], preprocess, workers: int = 2, max_pixels: int = DEFAULT_MAX_PIXELS,
                 ahead: int = 256) -> None:
        self.paths = list(paths)
        self.preprocess, self.max_pixels, self.ahead = preprocess, max_pixels, ahead
        self.workers = max(0, min(int(workers), len(self.paths))) if len(self.paths) > 1 else 0
        self._pool = None
        self._pending: deque = deque()
        self._next = 0
        if self.workers:
            _JOB.update(paths=self.paths, preprocess=preprocess, max_pixels=max_pixels)
            try:
                self._pool = _pool(self.workers)
            finally:
                _JOB.clear()
            self._procs = list(self._pool._pool)  # the worker processes, to notice one that dies
            self._fill()

    def _fill(self) -> None:
        while self._next < len(self.paths) and len(self._pending) < self.ahead:
            self._pending.append(self._pool.apply_async(_decode_index, (self._next,)))
            self._next += 1

    def __len__(self) -> int:
        return len(self.paths)

    def remaining(self) -> int:
        """Results not yet taken."""
        return len(self._pending) + len(self.paths) - self._next

    def ready(self) -> int:
        """Results that can be taken now without waiting (in order)."""
        if self._pool is None:
            return 0
        n = 0
        for r in self._pending:
            if not r.ready():
                break
            n += 1
        return n

    def take(self) -> Decoded:
        """The next result in order (waits for it)."""
        if self._pool is None:
            i = self._next
            self._next += 1
            return decode_file(i, self.paths[i], self.preprocess, self.max_pixels)
        result = self._pending[0]
        while not result.ready():
            result.wait(1.0)
            if not result.ready() and any(p.exitcode is not None for p in self._procs):
                # a pool worker only ends when it dies: its file is lost and its result would never come
                i = self._next - len(self._pending)
                self.close()
                raise DecodeWorkerDied(f"a decoding process ended unexpectedly (killed for memory, or a crash in an "
                                       f"image decoder) at or after {self.paths[i]}; what was committed is kept "
                                       f"(--workers 0 decodes in one process and names the file)")
        self._pending.popleft()
        out = result.get()
        self._fill()
        return out

    def batches(self, batch_size: int, min_batch: int = 16) -> Iterator[list[Decoded]]:
        """Results in batches: at least ``min_batch`` (or what is left), then whatever else is ready, up to
        ``batch_size``; the model starts as soon as a few pictures are in instead of waiting for a full batch."""
        low = max(1, min(min_batch, batch_size))
        try:
            while self.remaining():
                batch = [self.take() for _ in range(min(low, self.remaining()))]
                while len(batch) < batch_size and self.remaining() and (self._pool is None or self.ready()):
                    batch.append(self.take())
                yield batch
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers (a run cut short leaves none behind)."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if not any(p.exitcode is not None for p in self._procs):
            pool.terminate()
            pool.join()
            return
        # A worker died: it may have left one of the pool's queue locks taken (a process that dies never releases
        # one), and Pool.terminate then waits for it forever (about 1 run in 8 here). The workers are killed, the two
        # locks terminate takes are replaced by fresh ones, and terminate then stops the pool's threads as usual.
        for proc in list(pool._pool) + self._procs:
            if proc.exitcode is None:
                proc.kill()
                proc.join(TERMINATE_WAIT_S)
        ctx = multiprocessing.get_context("fork")
        pool._inqueue._rlock = ctx.Lock()
        if getattr(pool._outqueue, "_wlock", None) is not None:
            pool._outqueue._wlock = ctx.Lock()
        pool.terminate()
        for proc in list(pool._pool):  # a replacement the pool started before it stopped
            if proc.exitcode is None:
                proc.kill()
                proc.join(TERMINATE_WAIT_S)


def decode_files(paths: Sequence[str], preprocess, workers: int = 2, max_pixels: int = DEFAULT_MAX_PIXELS,
                 ahead: int = 256) -> Iterator[Decoded]:
    """Yield every path's :class:`Decoded`, in order, decoded by ``workers`` processes (0: here)."""
    stream = DecodeStream(paths, preprocess, workers, max_pixels, ahead)
    try:
        while stream.remaining():
            yield stream.take()
    finally:
        stream.close()
