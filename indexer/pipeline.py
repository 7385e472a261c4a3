"""Incremental indexing: scan -> diff against the store -> hash -> embed new content -> commit in chunks.

Only new or changed files (size+mtime, then sha256) are read; content already known by hash (a rename,
a move, a duplicate) is linked without embedding; files that disappeared lose their rows, and images
left with no file lose their vectors. Vectors and rows are committed together, chunk by chunk, so a
killed run resumes where it stopped.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
from tqdm import tqdm

from lookalike.interrupts import held
from lookalike.log import logger
from lookalike.protocols import EmbedderLike

from .decoding import DecodeStream
from .loading import DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS, ImageLoadError, load_image, sha256_file
from .scan import ScanEntry, ScanProblem, is_below, merge_roots, scan
from .signature import lowfreq_signature
from .store import FileState, MetadataStore, NewImage, SkippedState

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
            vecs = (embedder.embed_tensor(np.stack([d.pixels for d in ok if d.pixels is not None])) if ok
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


# ---------------------------------------------------------------------------- the stages of index_paths
_FileSkip = tuple[str, str, int, int]  # (path, reason, size, mtime_ns), as the store records a skipped file
_Group = tuple[str | None, list[ScanEntry]]  # new content: its sha256 (None: hashed by its decode) and its files
_Batch = tuple[np.ndarray, list[tuple], list[tuple[int, str]]]  # what embed_files yields


@dataclass
class _Run:
    """What the stages of one run share: the store and writer, where warnings go, the stop check, the report."""

    store: MetadataStore
    writer: IndexWriter
    warn: Callable[[str, str], None]
    stopped: Callable[[], bool]
    progress: "bool | ProgressCallback"
    report: IndexReport = field(default_factory=IndexReport)
    t0: float = field(default_factory=time.perf_counter)
    new_skips: list[_FileSkip] = field(default_factory=list)  # scan and hash failures, committed with the links
    decode_skips: list[tuple[str, str]] = field(default_factory=list)
    changed_during: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path: str, reason: str, size: int, mtime_ns: int) -> None:
        """A file that could not be read before decoding: recorded and warned about."""
        self.new_skips.append((path, reason, size, mtime_ns))
        self.warn(path, reason)

    def cancelled(self) -> IndexReport:
        """The report of a run stopped before it committed any content."""
        self.report.cancelled = True
        self.report.seconds = time.perf_counter() - self.t0
        return self.report

    def finish(self) -> IndexReport:
        """The report with every file skipped in this run and the time it took."""
        self.report.problems = [(p, r) for p, r, *_ in self.new_skips] + self.decode_skips + self.changed_during
        self.report.skipped += len(self.report.problems)
        self.report.seconds = time.perf_counter() - self.t0
        return self.report


@dataclass
class _ScanResult:
    """The files found below the roots and those the scan could not read."""

    entries: list[ScanEntry] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)


@dataclass
class _Diff:
    """What the store knew of the scanned files, and the files to (re)index."""

    known: dict[str, FileState]
    known_skipped: dict[str, SkippedState]
    todo: list[ScanEntry]

    @property
    def changed_paths(self) -> list[str]:
        """Indexed paths whose file changed (their old image may be left without files)."""
        return [e.path for e in self.todo if e.path in self.known]


def _file_row(e: ScanEntry) -> tuple[str, int, int, int, int]:
    """The row the store keeps for a file (path, size, mtime_ns, ctime_ns, inode)."""
    return (e.path, e.size, e.mtime_ns, e.ctime_ns, e.ino)


def _skip_settings(spec: EmbedSpec) -> str:
    """The limits a skipped file is tried under, as stored in the meta."""
    return json.dumps({"max_pixels": spec.max_pixels, "max_decode_bytes": DEFAULT_MAX_DECODE_BYTES})


def _missing_roots(run: _Run, root_list: list[str], remove_missing: bool) -> list[str]:
    """Indexed folders no longer on disk, each warned about (their files are treated as gone)."""
    recorded = set(run.store.roots())
    missing = [r for r in root_list if r in recorded and not os.path.exists(r)]
    for r in missing:
        run.warn(r, "indexed folder not found (deleted, moved or not mounted); its files are "
                    + ("forgotten" if remove_missing else "kept"))
    return missing


def _scan(run: _Run, roots: list[str]) -> _ScanResult | None:
    """The files below ``roots``; None when stopped."""
    found = _ScanResult()
    for item in progress_bar(scan(roots), desc="scanning", unit="file", progress=run.progress, leave=False):
        if isinstance(item, ScanEntry):
            found.entries.append(item)
        else:
            found.problems.append(item)
        if run.stopped():
            return None
    return found


def _unchanged_skip(e: ScanEntry, skipped: SkippedState | None, retry_skipped: bool) -> bool:
    """Whether ``e`` is a file skipped before that is not to be tried again."""
    return (skipped is not None and skipped.size == e.size and skipped.mtime_ns == e.mtime_ns and not retry_skipped
            and not (skipped.reason == "permission denied" and os.access(e.path, os.R_OK)))


def _diff(run: _Run, entries: list[ScanEntry], root_list: list[str], retry_skipped: bool) -> _Diff:
    """The new or changed files among ``entries``; counts the unchanged ones and the known bad ones."""
    diff = _Diff(run.store.file_states(under=root_list), run.store.skipped_states(), [])
    for e in entries:
        state = diff.known.get(e.path)
        if state is not None and (state.size, state.mtime_ns, state.ctime_ns, state.ino) == (e.size, e.mtime_ns, e.ctime_ns, e.ino):
            run.report.unchanged += 1
        elif _unchanged_skip(e, diff.known_skipped.get(e.path), retry_skipped):
            run.report.skipped += 1  # still the same bad file: not retried, already reported
        else:
            diff.todo.append(e)
    return diff


def _hash_one(e: ScanEntry) -> tuple[ScanEntry, str | None, str | None]:
    """(entry, sha256, None), or (entry, None, why it could not be read)."""
    try:
        return e, sha256_file(e.path), None
    except ImageLoadError as exc:
        return e, None, exc.reason


def _hash_changed(run: _Run, todo: list[ScanEntry], workers: int) -> tuple[dict[str, list[ScanEntry]], list[ScanEntry]]:
    """(files by sha256, files hashed later by the read that decodes them) for ``todo``; unreadable ones are skipped.

    A file whose size no indexed file and no other new file has cannot hold content indexed before (nor share it
    with another new file): it is not hashed here."""
    by_sha: dict[str, list[ScanEntry]] = {}
    if not todo:
        return by_sha, []
    sizes = run.store.file_sizes()
    counts: dict[int, int] = {}
    for e in todo:
        counts[e.size] = counts.get(e.size, 0) + 1
    deferred = [e for e in todo if counts[e.size] == 1 and e.size not in sizes]
    to_hash = [e for e in todo if not (counts[e.size] == 1 and e.size not in sizes)]
    with ThreadPoolExecutor(max_workers=max(2, workers)) as pool:  # I/O bound: threads
        for e, sha, err in progress_bar(pool.map(_hash_one, to_hash), total=len(to_hash), desc="hashing",
                                        unit="file", progress=run.progress, leave=False):
            if run.stopped():
                pool.shutdown(wait=False, cancel_futures=True)
                break
            if sha is None:
                run.skip(e.path, str(err), e.size, e.mtime_ns)
            else:
                by_sha.setdefault(sha, []).append(e)
    return by_sha, deferred


def _link_known(run: _Run, by_sha: dict[str, list[ScanEntry]], deferred: list[ScanEntry],
                known: dict[str, FileState]) -> list[_Group]:
    """Point files whose content is indexed already (renames, moves, duplicates) at it and record the skips so
    far; returns the new content to embed."""
    existing = run.store.ids_by_sha(by_sha)
    links = [(e.path, e.size, e.mtime_ns, existing[sha], e.ctime_ns, e.ino)
             for sha, es in by_sha.items() if sha in existing for e in es]
    if links or run.new_skips:
        run.store.commit_chunk([], links, run.new_skips)
    run.report.linked = sum(1 for p, *_ in links if p not in known)
    new_groups: list[_Group] = [(sha, es) for sha, es in by_sha.items() if sha not in existing]
    new_groups += [(None, [e]) for e in deferred]  # their hash comes with their decode
    if new_groups:
        run.writer.expect(run.store.counts()["images"] + len(new_groups))
    return new_groups


class _ChunkCommitter:
    """The embedded images and decode failures not committed yet; :meth:`flush` commits them (rows, then vectors)."""

    def __init__(self, run: _Run, known: dict[str, FileState], save_every_s: float) -> None:
        self.run, self.known, self.save_every_s = run, known, save_every_s
        self.images: list[NewImage] = []
        self.skips: list[_FileSkip] = []
        self.by_sha: dict[str, NewImage] = {}  # the images of this chunk, by content
        self.deferred_shas: set[str] = set()  # content hashed by its decode, this run
        self.last_save = time.perf_counter()

    def __len__(self) -> int:
        return len(self.images) + len(self.skips)

    def add(self, group: _Group, vector: np.ndarray, width: int, height: int, sig: np.ndarray | None,
            decoded_sha: str | None) -> None:
        """One decoded image of a new group (``decoded_sha``: the hash of the bytes its decode read)."""
        sha, es = group
        if sha is None:  # hashed in the read that decoded it
            if decoded_sha is None:
                raise RuntimeError("the decoder gave no hash for a file hashed while decoding")
            sha = decoded_sha
            self.deferred_shas.add(sha)
            if sha in self.by_sha:  # the same content as another new file (it changed size since the scan)
                self.by_sha[sha].files.extend(_file_row(e) for e in es)
                return
        elif decoded_sha is not None and decoded_sha != sha:
            # rewritten between hashing and decoding: neither hash nor vector is kept (no row, no skip), so the next
            # run sees the new file and indexes what it then holds
            for e in es:
                self.run.changed_during.append((e.path, "changed while it was being indexed; the next run indexes it"))
                self.run.warn(*self.run.changed_during[-1])
            return
        self.images.append(NewImage(sha, width, height, vector, [_file_row(e) for e in es], lowfreq=sig))
        self.by_sha[sha] = self.images[-1]

    def fail(self, group: _Group, reason: str) -> None:
        """The files of a group that did not decode."""
        for e in group[1]:
            self.skips.append((e.path, reason, e.size, e.mtime_ns))
            self.run.decode_skips.append((e.path, reason))
            self.run.warn(e.path, reason)

    def flush(self) -> None:
        """Commit what is pending in one transaction, then add its vectors to the writer (saved now and then)."""
        if not self.images and not self.skips:
            return
        store, report = self.run.store, self.run.report
        # content hashed while decoding may be indexed after all (an image left with no file by a run cut short):
        # its files are linked to it, and the vector just made is dropped
        late = store.ids_by_sha([im.sha256 for im in self.images if im.sha256 in self.deferred_shas])
        late_links = [(f[0], f[1], f[2], late[im.sha256], *f[3:]) for im in self.images if im.sha256 in late
                      for f in im.files]
        images = [im for im in self.images if im.sha256 not in late]
        with held():  # rows and vectors together: an interrupt waits for both
            ids = store.commit_chunk(images, late_links, self.skips)
            if images:
                self.run.writer.add(np.asarray(ids, np.int64), np.stack([im.vector for im in images]))
        report.indexed += len(images)
        report.linked += sum(1 for link in late_links if link[0] not in self.known)
        self.images, self.skips = [], []
        self.by_sha.clear()
        if time.perf_counter() - self.last_save > self.save_every_s:
            self.run.writer.flush()
            self.last_save = time.perf_counter()


def _embed_batches(spec: EmbedSpec, paths: list[str], *, executor: str, ray_address: str | None, batch_size: int,
                   workers: int, progress: "bool | ProgressCallback") -> Iterator[_Batch]:
    """The embedded batches of ``paths``, here or on Ray."""
    if executor == "ray":
        from .distributed import ray_embed_files

        return ray_embed_files(spec.factory, spec.model, spec.dim, paths, batch_size=batch_size,
                               workers=max(1, workers), max_pixels=spec.max_pixels, address=ray_address,
                               progress=progress is True)
    # decoding starts while the model loads when the index records its preprocessing
    return embed_files(spec.load if spec.preprocess is not None else spec.load(), paths, batch_size=batch_size,
                       workers=workers, max_pixels=spec.max_pixels, progress=progress, preprocess=spec.preprocess)


def _embed_new(run: _Run, new_groups: list[_Group], embed: Callable[[list[str]], Iterator[_Batch]],
               known: dict[str, FileState], chunk_size: int, save_every_s: float) -> None:
    """Embed the new content (``embed``: paths -> batches) and commit it chunk by chunk; a stop ends it after the
    batch at hand."""
    t_embed = time.perf_counter()
    batches = embed([es[0].path for _, es in new_groups])
    committer = _ChunkCommitter(run, known, save_every_s)
    for vecs, meta, failed in batches:
        for row, (i, w, h, sig, *decoded) in enumerate(meta):
            committer.add(new_groups[i], vecs[row], w, h, sig, decoded[0] if decoded else None)
        for i, reason in failed:
            committer.fail(new_groups[i], reason)
        if len(committer) >= chunk_size:
            committer.flush()
        if run.stopped():
            run.report.cancelled = True
            break
    if hasattr(batches, "close"):
        batches.close()  # a stopped run ends its decoding workers now
    committer.flush()
    run.report.embed_seconds = time.perf_counter() - t_embed


def _forget_gone(run: _Run, entries: list[ScanEntry], diff: _Diff, root_list: list[str]) -> None:
    """Forget the files below the roots that are no longer on disk (and their images and skip records)."""
    seen = {e.path for e in entries}
    gone = [p for p in diff.known if p not in seen]
    skipped_now = {s[0] for s in run.new_skips}
    stale_skips = [p for p in diff.known_skipped if any(is_below(p, r) for r in root_list) and p not in seen
                   and p not in skipped_now]
    if gone:
        with held():
            run.writer.remove(run.store.remove_paths(gone))
        run.report.removed = len(gone)
    if stale_skips:
        run.store.remove_skipped(stale_skips)


def _never() -> bool:
    """The stop check of a run nobody stops."""
    return False


def _no_warning(path: str, reason: str) -> None:
    """Where warnings go with ``warn=None``."""


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
    run = _Run(store, writer, warn or _no_warning, stop or _never, progress)
    # decoding processes: never more than the cores (--workers 1000 once started 1000 processes for one image)
    workers = _default_workers() if workers is None else max(0, min(int(workers), os.cpu_count() or 1))
    root_list = merge_roots(roots)  # a file or folder inside another root is scanned once, with it
    # a gone indexed folder is reported and its files treated as gone; a never indexed one that does not exist is an
    # error (scan raises FileNotFoundError)
    run.report.missing_roots = _missing_roots(run, root_list, remove_missing)
    found = _scan(run, [r for r in root_list if r not in run.report.missing_roots])
    if found is None:
        return run.cancelled()
    store.add_roots(root_list)
    settings = _skip_settings(spec)
    diff = _diff(run, found.entries, root_list, retry_skipped or store.get_meta(SKIP_SETTINGS_KEY) != settings)
    for p in found.problems:
        run.skip(p.path, p.reason, p.size, p.mtime_ns)
    by_sha, deferred = _hash_changed(run, diff.todo, workers)
    if run.stopped():  # nothing of this run is committed yet but the roots: the next run starts over
        return run.cancelled()
    new_groups = _link_known(run, by_sha, deferred, diff.known)
    if new_groups:
        embed = functools.partial(_embed_batches, spec, executor=executor, ray_address=ray_address,
                                  batch_size=batch_size, workers=workers, progress=progress)
        _embed_new(run, new_groups, embed, diff.known, chunk_size, save_every_s)
        if run.report.cancelled:
            writer.flush()
            return run.finish()
    if remove_missing:
        _forget_gone(run, found.entries, diff, root_list)
    if diff.changed_paths or run.new_skips or run.decode_skips:  # images whose only file changed or turned bad
        with held():
            writer.remove(store.remove_orphans())
    # images indexed before signatures existed (schema < 3) get theirs, once (after the removals)
    fill_signatures(store, max_pixels=spec.max_pixels, progress=progress)
    writer.flush()
    if store.get_meta(SKIP_SETTINGS_KEY) != settings:
        store.set_meta(**{SKIP_SETTINGS_KEY: settings})  # skipped files were tried under these settings
    return run.finish()
