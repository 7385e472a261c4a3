"""Incremental indexing: scan -> diff against the store -> hash -> embed new content -> commit in chunks.

Only new or changed files (size+mtime, then sha256) are read; content already known by hash (a rename,
a move, a duplicate) is linked without embedding; files that disappeared lose their rows, and images
left with no file lose their vectors. Vectors and rows are committed together, chunk by chunk, so a
killed run resumes where it stopped.
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from lookalike.log import logger
from lookalike.protocols import EmbedderLike

from .decoding import DecodeStream
from .loading import DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS, ImageLoadError, load_image, sha256_file
from .scan import ScanEntry, ScanProblem, is_below, merge_roots, scan
from .signature import lowfreq_signature
from .store import MetadataStore, NewImage

__all__ = ["IndexReport", "IndexWriter", "EmbedSpec", "index_paths", "fill_signatures", "embed_files", "warn_stderr"]


_log = logger(__name__)
SKIP_SETTINGS_KEY = "skip_settings"  # store meta: the limits skipped files were last tried under


class IndexWriter(Protocol):
    """Where the pipeline sends vectors once their rows are committed (the engine's FAISS maintainer)."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: Sequence[int]) -> None: ...

    def flush(self) -> None: ...

    def expect(self, n_images: int) -> None:
        """Called before embedding with the number of images the index will hold: refuse what cannot work."""


@dataclass
class EmbedSpec:
    """The embedding step of a run: the model by name and dimension, how to get it here (``load``) and how a
    remote worker builds it from its name (``factory``, a module-level function Ray can ship)."""

    model: str
    dim: int
    max_pixels: int
    load: Callable[[], EmbedderLike]
    factory: Callable[[str], EmbedderLike]
    preprocess: Any = None  # the model's PreprocessConfig when known without loading it (decoding starts at once)


@dataclass
class IndexReport:
    """What an indexing run did."""

    indexed: int = 0          # new images embedded
    unchanged: int = 0        # files untouched since the last run
    linked: int = 0           # new paths whose content was already indexed (rename, move, duplicate)
    removed: int = 0          # files gone from disk, forgotten
    skipped: int = 0          # files that could not be indexed (see problems)
    missing_roots: list[str] = field(default_factory=list)  # indexed folders no longer on disk (their files forgotten)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    problems: list[tuple[str, str]] = field(default_factory=list)
    cancelled: bool = False   # stopped on request: what was committed is kept, the rest waits for the next run

    @property
    def images_per_s(self) -> float:
        return self.indexed / self.embed_seconds if self.embed_seconds > 0 else 0.0

    def summary(self) -> str:
        return (("cancelled: " if self.cancelled else "") + f"indexed {self.indexed}, unchanged {self.unchanged}, linked {self.linked}, "
                f"removed {self.removed}, skipped {self.skipped} in {self.seconds:.1f}s"
                + (f" ({self.images_per_s:.1f} img/s)" if self.indexed else "")
                + (f"; folder{'s' if len(self.missing_roots) > 1 else ''} not found: {', '.join(self.missing_roots)}"
                   if self.missing_roots else ""))


ProgressCallback = Callable[[str, int, "int | None"], None]


class _CallbackBar:
    """A tqdm stand-in that reports (phase, done, total) to a callback (e.g. a web UI's progress bar)."""

    def __init__(self, callback: ProgressCallback, iterable=None, total: int | None = None, desc: str = "") -> None:
        self.callback, self.iterable, self.desc, self.n = callback, iterable, desc, 0
        self.total = len(iterable) if total is None and hasattr(iterable, "__len__") else total
        callback(desc, 0, self.total)

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        self.callback(self.desc, self.n, self.total)

    def close(self) -> None:
        pass


def progress_bar(iterable=None, *, total: int | None = None, desc: str, unit: str,
                 progress: "bool | ProgressCallback", leave: bool = True):
    """tqdm on stderr when ``progress`` is True, callback reports when it is callable, silent when False."""
    if callable(progress):
        return _CallbackBar(progress, iterable, total, desc)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not progress, dynamic_ncols=True,
                file=sys.stderr, leave=leave)


def embed_files(embedder, paths: Sequence[str], batch_size: int = 64, workers: int = 2,
                max_pixels: int = DEFAULT_MAX_PIXELS, progress: "bool | ProgressCallback" = True,
                desc: str = "embedding", preprocess=None):
    """Yield (vectors, [(i, w, h, low-frequency signature, sha256 of the bytes decoded)], [(i, reason)]) per batch
    for ``paths`` (``i`` indexes ``paths``).

    Files are decoded by ``workers`` processes while this one runs the model on batches of what is decoded (at
    least 16 pictures, up to ``batch_size``). ``embedder`` may be a function that loads it: with ``preprocess``
    (its :class:`~lookalike.retrieval.preprocess.PreprocessConfig`) given, decoding starts while it loads."""
    stream = DecodeStream(paths, preprocess if preprocess is not None else embedder.preprocess,
                          workers=min(workers, len(paths)), max_pixels=max_pixels)
    bar = progress_bar(total=len(stream), desc=desc, unit="img", progress=progress)
    try:
        if not hasattr(embedder, "embed_tensor"):
            embedder = embedder()
            if embedder.preprocess != stream.preprocess:  # the index recorded another preprocessing: start again
                stream.close()
                stream = DecodeStream(paths, embedder.preprocess, workers=min(workers, len(paths)),
                                      max_pixels=max_pixels)
        for batch in stream.batches(batch_size):
            ok = [d for d in batch if d.pixels is not None]
            vecs = (embedder.embed_tensor(np.stack([d.pixels for d in ok])) if ok
                    else np.zeros((0, embedder.dim), np.float32))
            bar.update(len(batch))
            yield (vecs, [(d.i, d.width, d.height, d.signature, d.sha256) for d in ok],
                   [(d.i, d.reason) for d in batch if d.pixels is None])
    finally:
        stream.close()
        bar.close()


def _default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2)))


def warn_stderr(path: str, reason: str) -> None:
    """Report a skipped file as one warning on the lookalike log (one line on stderr, above any progress bar, unless
    the application routes it; lookalike/log.py)."""
    _log.warning("skipped %s: %s", path, reason)


def fill_signatures(store: MetadataStore, max_pixels: int = DEFAULT_MAX_PIXELS,
                    progress: "bool | ProgressCallback" = True, chunk: int = 256) -> int:
    """Compute the low-frequency signature of every stored image that lacks one (from the first of its paths
    that still decodes); returns how many were filled. Images none of whose files decode keep none."""
    todo = store.missing_signatures()
    if not todo:
        return 0

    def one(item: tuple[int, list[str]]):
        iid, paths = item
        for path in paths:
            try:
                return iid, lowfreq_signature(load_image(path, max_pixels=max_pixels, draft_size=64))
            except (ImageLoadError, OSError, ValueError):
                continue
        return iid, None

    done = 0
    pending: list[tuple[int, np.ndarray]] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for iid, sig in progress_bar(pool.map(one, todo), total=len(todo), desc="signatures", unit="img",
                                     progress=progress, leave=False):
            if sig is not None:
                pending.append((iid, sig))
            if len(pending) >= chunk:
                store.set_signatures(pending)
                done, pending = done + len(pending), []
    store.set_signatures(pending)
    return done + len(pending)


def _cancelled(report: IndexReport, t0: float) -> IndexReport:
    report.cancelled = True
    report.seconds = time.perf_counter() - t0
    return report


def index_paths(store: MetadataStore, writer: IndexWriter, spec: EmbedSpec, roots: Iterable[str | os.PathLike], *,
                batch_size: int = 64, workers: int | None = None, chunk_size: int = 512,
                progress: "bool | ProgressCallback" = True, remove_missing: bool = True, save_every_s: float = 60.0,
                warn: Callable[[str, str], None] | None = warn_stderr, executor: str = "local",
                ray_address: str | None = None, retry_skipped: bool = False,
                stop: Callable[[], bool] | None = None) -> IndexReport:
    """Bring ``store`` (and ``writer``'s index) up to date with the files below ``roots``.

    ``stop``: asked between steps and after every embedded batch; once it answers True the run commits what it
    has embedded, flushes the index and returns with ``report.cancelled`` (nothing is removed in that run).

    A file skipped before is tried again when it changed, when the settings that refused it changed (the pixel or
    decode limit), when it was unreadable and can be read now (a ``chmod``), or with ``retry_skipped``.

    ``executor="ray"`` decodes and embeds new content on Ray (indexer.distributed); everything else, the
    chunked commits included, stays here.
    """
    t0 = time.perf_counter()
    warn = warn or (lambda p, r: None)
    stopped = stop or (lambda: False)
    # decoding processes: never more than the cores (--workers 1000 once started 1000 processes for one image)
    workers = _default_workers() if workers is None else max(0, min(int(workers), os.cpu_count() or 1))
    report = IndexReport()
    root_list = merge_roots(roots)  # a file or folder inside another root is scanned once, with it
    # an indexed folder that is gone (deleted, moved, unmounted) is reported and its files are treated as gone; the
    # others are synced. A path never indexed that does not exist is an error (scan raises FileNotFoundError).
    recorded = set(store.roots())
    report.missing_roots = [r for r in root_list if r in recorded and not os.path.exists(r)]
    for r in report.missing_roots:
        warn(r, "indexed folder not found (deleted, moved or not mounted); its files are "
                + ("forgotten" if remove_missing else "kept"))

    # 1. scan
    entries: list[ScanEntry] = []
    problems: list[ScanProblem] = []
    present = [r for r in root_list if r not in report.missing_roots]
    for item in progress_bar(scan(present), desc="scanning", unit="file", progress=progress, leave=False):
        (entries if isinstance(item, ScanEntry) else problems).append(item)
        if stopped():
            return _cancelled(report, t0)
    store.add_roots(root_list)

    # 2. diff against what the store knows
    known = store.file_states(under=root_list)
    known_skipped = store.skipped_states()
    settings = json.dumps({"max_pixels": spec.max_pixels, "max_decode_bytes": DEFAULT_MAX_DECODE_BYTES})
    retry_skipped = retry_skipped or store.get_meta(SKIP_SETTINGS_KEY) != settings
    todo: list[ScanEntry] = []
    for e in entries:
        state = known.get(e.path)
        if state is not None and (state.size, state.mtime_ns, state.ctime_ns, state.ino) == (e.size, e.mtime_ns, e.ctime_ns, e.ino):
            report.unchanged += 1
            continue
        sk = known_skipped.get(e.path)
        if (sk is not None and sk[0] == e.size and sk[1] == e.mtime_ns and not retry_skipped
                and not (sk.reason == "permission denied" and os.access(e.path, os.R_OK))):
            report.skipped += 1  # still the same bad file: not retried, already reported
            continue
        todo.append(e)

    new_skips: list[tuple[str, str, int, int]] = []
    for p in problems:
        new_skips.append((p.path, p.reason, p.size, p.mtime_ns))
        warn(p.path, p.reason)

    # 3. hash what changed (I/O bound: threads). A file whose size no indexed file and no other new file has cannot
    # hold content indexed before (nor share it with another new file): it is hashed in the read that decodes it
    by_sha: dict[str, list[ScanEntry]] = {}
    deferred: list[ScanEntry] = []
    if todo:
        sizes = store.file_sizes()
        counts: dict[int, int] = {}
        for e in todo:
            counts[e.size] = counts.get(e.size, 0) + 1
        deferred = [e for e in todo if counts[e.size] == 1 and e.size not in sizes]
        to_hash = [e for e in todo if not (counts[e.size] == 1 and e.size not in sizes)]

        def _hash(e: ScanEntry):
            try:
                return e, sha256_file(e.path), None
            except ImageLoadError as exc:
                return e, None, exc.reason

        with ThreadPoolExecutor(max_workers=max(2, workers)) as pool:
            for e, sha, err in progress_bar(pool.map(_hash, to_hash), total=len(to_hash), desc="hashing",
                                            unit="file", progress=progress, leave=False):
                if stopped():
                    pool.shutdown(wait=False, cancel_futures=True)
                    break
                if sha is None:
                    new_skips.append((e.path, err, e.size, e.mtime_ns))
                    warn(e.path, err)
                else:
                    by_sha.setdefault(sha, []).append(e)

    if stopped():  # nothing of this run is committed yet but the roots: the next run starts over
        return _cancelled(report, t0)

    # 4. link content already indexed (renames, moves, duplicates), record scan problems
    existing = store.ids_by_sha(by_sha)
    links = [(e.path, e.size, e.mtime_ns, existing[sha], e.ctime_ns, e.ino)
             for sha, es in by_sha.items() if sha in existing for e in es]
    changed_paths = [e.path for e in todo if e.path in known]
    if links or new_skips:
        store.commit_chunk([], links, new_skips)
    report.linked = sum(1 for p, *_ in links if p not in known)
    new_groups: list[tuple[str | None, list[ScanEntry]]] = [(sha, es) for sha, es in by_sha.items() if sha not in existing]
    new_groups += [(None, [e]) for e in deferred]  # their hash comes with their decode
    if new_groups:
        writer.expect(store.counts()["images"] + len(new_groups))

    # 5. embed new content in chunks; each chunk commits rows+vectors, then goes into FAISS
    decode_skips: list[tuple[str, str]] = []
    changed_during: list[tuple[str, str]] = []
    if new_groups:
        t_embed = time.perf_counter()
        first_paths = [es[0].path for _, es in new_groups]
        if executor == "ray":
            from .distributed import ray_embed_files

            batches = ray_embed_files(spec.factory, spec.model, spec.dim, first_paths, batch_size=batch_size,
                                      workers=max(1, workers), max_pixels=spec.max_pixels, address=ray_address,
                                      progress=progress is True)
        else:
            # decoding starts while the model loads when the index records its preprocessing
            batches = embed_files(spec.load if spec.preprocess is not None else spec.load(), first_paths,
                                  batch_size=batch_size, workers=workers, max_pixels=spec.max_pixels,
                                  progress=progress, preprocess=spec.preprocess)
        pending_images: list[NewImage] = []
        pending_skips: list[tuple[str, str, int, int]] = []
        last_save = time.perf_counter()

        def flush() -> None:
            nonlocal pending_images, pending_skips, last_save
            if not pending_images and not pending_skips:
                return
            # content hashed while decoding may be indexed after all (an image left with no file by a run cut short):
            # its files are linked to it, and the vector just made is dropped
            late = store.ids_by_sha([im.sha256 for im in pending_images if im.sha256 in deferred_shas])
            late_links = [(f[0], f[1], f[2], late[im.sha256], *f[3:]) for im in pending_images if im.sha256 in late
                          for f in im.files]
            pending_images = [im for im in pending_images if im.sha256 not in late]
            ids = store.commit_chunk(pending_images, late_links, pending_skips)
            if pending_images:
                writer.add(np.asarray(ids, np.int64), np.stack([im.vector for im in pending_images]))
            report.indexed += len(pending_images)
            report.linked += sum(1 for link in late_links if link[0] not in known)
            pending_images, pending_skips = [], []
            new_by_sha.clear()
            if time.perf_counter() - last_save > save_every_s:
                writer.flush()
                last_save = time.perf_counter()

        deferred_shas: set[str] = set()
        new_by_sha: dict[str, NewImage] = {}  # the images of this chunk, by content
        for vecs, meta, failed in batches:
            for row, (i, w, h, sig, *decoded) in enumerate(meta):
                sha, es = new_groups[i]
                if sha is None:  # hashed in the read that decoded it
                    if not decoded or decoded[0] is None:
                        raise RuntimeError("the decoder gave no hash for a file hashed while decoding")
                    sha = decoded[0]
                    deferred_shas.add(sha)
                    if sha in new_by_sha:  # the same content as another new file (it changed size since the scan)
                        new_by_sha[sha].files.extend((e.path, e.size, e.mtime_ns, e.ctime_ns, e.ino) for e in es)
                        continue
                elif decoded and decoded[0] is not None and decoded[0] != sha:
                    # rewritten between hashing and decoding: neither hash nor vector is kept (no row, no skip), so
                    # the next run sees the new file and indexes what it then holds
                    for e in es:
                        changed_during.append((e.path, "changed while it was being indexed; the next run indexes it"))
                        warn(*changed_during[-1])
                    continue
                pending_images.append(NewImage(sha, w, h, vecs[row], [(e.path, e.size, e.mtime_ns, e.ctime_ns, e.ino)
                                                                      for e in es], lowfreq=sig))
                new_by_sha[sha] = pending_images[-1]
            for i, reason in failed:
                _, es = new_groups[i]
                for e in es:
                    pending_skips.append((e.path, reason, e.size, e.mtime_ns))
                    decode_skips.append((e.path, reason))
                    warn(e.path, reason)
            if len(pending_images) + len(pending_skips) >= chunk_size:
                flush()
            if stopped():
                report.cancelled = True
                break
        if hasattr(batches, "close"):
            batches.close()  # a stopped run ends its decoding workers now
        flush()
        report.embed_seconds = time.perf_counter() - t_embed
        if report.cancelled:
            writer.flush()
            report.problems = [(p, r) for p, r, *_ in new_skips] + decode_skips + changed_during
            report.skipped += len(report.problems)
            report.seconds = time.perf_counter() - t0
            return report

    # 6. forget what is gone (and paths whose content changed and no longer point at their old image)
    if remove_missing:
        seen = {e.path for e in entries}
        gone = [p for p in known if p not in seen]
        skipped_now = {s[0] for s in new_skips}
        stale_skips = [p for p in known_skipped if any(is_below(p, r) for r in root_list) and p not in seen
                       and p not in skipped_now]
        if gone:
            orphans = store.remove_paths(gone)
            writer.remove(orphans)
            report.removed = len(gone)
        if stale_skips:
            store.remove_skipped(stale_skips)
    # images whose only file changed content (or turned bad) are orphans now
    if changed_paths or new_skips or decode_skips:
        writer.remove(store.remove_orphans())

    # 7. images indexed before signatures existed (schema < 3) get theirs, once (after the removals: files that are
    # gone are not decoded for nothing)
    fill_signatures(store, max_pixels=spec.max_pixels, progress=progress)

    writer.flush()
    if store.get_meta(SKIP_SETTINGS_KEY) != settings:
        store.set_meta(**{SKIP_SETTINGS_KEY: settings})  # skipped files were tried under these settings
    report.problems = [(p, r) for p, r, *_ in new_skips] + decode_skips + changed_during
    report.skipped += len(report.problems)
    report.seconds = time.perf_counter() - t0
    return report

