"""Groups of near-duplicate images: resized, recompressed, cropped or lightly edited copies of one picture.

Every pair of stored vectors with cosine similarity >= ``threshold`` is linked and the groups are the
connected components. Up to :data:`EXACT_MAX` images every pair is compared (blocked matrix products);
above, the vectors are split into about sqrt(n) k-means cells and each vector is compared with the members
of its :data:`NPROBE` nearest cells (the candidate set of a FAISS IVF range search, computed with matrix
products). Byte-identical files share one stored image, so each group lists every path of each image.

    report = find_duplicates(engine, threshold=0.9)
    for g in report.groups:
        print(g.keep, [f.path for f in g.files if not f.keep])
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np

__all__ = ["DEFAULT_THRESHOLD", "DuplicateFile", "DuplicateGroup", "DuplicateReport", "find_duplicates",
           "duplicate_components"]

# Best F1 on the DEV photos of benchmarks/duplicates.py with efficientnet_lite0 (pair precision and recall 1.000
# there; 0.993 / 0.973 on the evaluation photos) and again with the default ntxent-copies (1.000 / 1.000 on dev;
# 0.993 / 0.960 on eval); docs/benchmarks.md, "Near-duplicates".
DEFAULT_THRESHOLD = 0.86
EXACT_MAX = 20_000  # every pair up to this many images (about 8 s for 20k x 1280-d on 2 busy cores)
NPROBE = 8  # cells each vector is compared with above EXACT_MAX (pair recall 1.000 at 100k, benchmarks/duplicates.py)
BLOCK = 1024  # query rows per matrix product
EPS = 1e-6  # float32 rounding: the same pixels score 0.9999999, which still counts at threshold 1


@dataclass
class DuplicateFile:
    """One path in a group; ``similarity`` is its image's cosine similarity to the kept image."""

    path: str
    image_id: int
    sha256: str
    width: int
    height: int
    size: int
    mtime: float
    similarity: float
    keep: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DuplicateGroup:
    """Near-duplicates of one picture: ``keep`` is the suggested path to keep (largest, then oldest)."""

    id: int
    keep: str
    files: list[DuplicateFile] = field(default_factory=list)

    @property
    def min_similarity(self) -> float:
        return min(f.similarity for f in self.files)

    @property
    def reclaimable(self) -> int:
        """Bytes taken by the files not suggested for keeping."""
        return sum(f.size for f in self.files if not f.keep)

    def to_dict(self) -> dict:
        return {"id": self.id, "keep": self.keep, "min_similarity": round(self.min_similarity, 6),
                "reclaimable": self.reclaimable, "files": [f.to_dict() for f in self.files]}


@dataclass
class DuplicateReport:
    """The groups found among ``images`` stored images at ``threshold``, and how they were found."""

    threshold: float
    images: int
    method: str
    seconds: float
    groups: list[DuplicateGroup] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(len(g.files) for g in self.groups)

    @property
    def reclaimable(self) -> int:
        return sum(g.reclaimable for g in self.groups)

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "images": self.images, "method": self.method,
                "seconds": round(self.seconds, 3), "files": self.files, "reclaimable": self.reclaimable,
                "groups": [g.to_dict() for g in self.groups]}

    def rows(self) -> list[dict]:
        """One flat row per file (for CSV): group, keep, path, similarity, size and dates."""
        return [{"group": g.id, "keep": int(f.keep), "path": f.path, "similarity": round(f.similarity, 6),
                 "width": f.width, "height": f.height, "size": f.size,
                 "modified": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(f.mtime)), "sha256": f.sha256}
                for g in self.groups for f in g.files]


def _cells(n: int) -> int:
    """k-means cells for n vectors: a power of two near sqrt(n), 1 (exact) up to EXACT_MAX."""
    if n <= EXACT_MAX:
        return 1
    return int(min(4096, 1 << int(round(np.log2(np.sqrt(n))))))


def _edges(vecs: np.ndarray, threshold: float, nlist: int, nprobe: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs of row numbers (a, b) with vecs[a] . vecs[b] >= threshold, block by block (each pair at least once)."""
    n = len(vecs)
    if nlist <= 1:
        for s in range(0, n, BLOCK):
            r, c = np.nonzero(vecs[s:s + BLOCK] @ vecs[s:].T >= threshold)
            keep = c > r  # the upper triangle: each pair once, no self-pairs
            yield r[keep] + s, c[keep] + s
        return
    import faiss

    rng = np.random.default_rng(0)
    sample = vecs[np.sort(rng.choice(n, min(n, 64 * nlist), replace=False))]
    km = faiss.Kmeans(vecs.shape[1], nlist, niter=10, seed=0, spherical=True)
    km.train(np.ascontiguousarray(sample))
    del sample
    probe = np.concatenate([km.index.search(vecs[s:s + 8192], nprobe)[1] for s in range(0, n, 8192)])
    home = probe[:, 0]
    members = np.argsort(home, kind="stable")
    m_bounds = np.searchsorted(home[members], np.arange(nlist + 1))
    visits = np.argsort(probe.ravel(), kind="stable")  # (row * nprobe + slot) ordered by probed cell
    v_bounds = np.searchsorted(probe.ravel()[visits], np.arange(nlist + 1))
    del probe, home
    for cell in range(nlist):
        mem = members[m_bounds[cell]:m_bounds[cell + 1]]
        if not len(mem):
            continue
        mvecs = vecs[mem]
        queries = visits[v_bounds[cell]:v_bounds[cell + 1]] // nprobe
        for s in range(0, len(queries), BLOCK):
            q = queries[s:s + BLOCK]
            r, c = np.nonzero(vecs[q] @ mvecs.T >= threshold)
            a, b = q[r], mem[c]
            keep = a != b
            yield a[keep], b[keep]


def duplicate_components(vecs: np.ndarray, threshold: float, nlist: int | None = None,
                         nprobe: int = NPROBE) -> tuple[np.ndarray, str]:
    """Component label per row of unit vectors ``vecs`` (rows linked at cosine >= threshold), and the method."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(vecs)
    nlist = _cells(n) if nlist is None else max(1, int(nlist))
    nprobe = min(nprobe, nlist)
    rows, cols = [], []
    for a, b in _edges(vecs, float(threshold) - EPS, nlist, nprobe):
        if len(a):
            rows.append(a.astype(np.int32))
            cols.append(b.astype(np.int32))
    if rows:
        a, b = np.concatenate(rows), np.concatenate(cols)
    else:
        a = b = np.zeros(0, np.int32)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels, "exact" if nlist == 1 else f"cells {nlist}, probe {nprobe}"


def _stored_vectors(engine) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every stored image, filled into one preallocated array (no second copy)."""
    ids = engine.store.image_ids()
    vecs = np.zeros((len(ids), engine.dim), np.float32)  # a row deleted meanwhile stays zero: never linked
    for part_ids, part in engine.store.iter_vectors():
        rows, ok = _rows_of(ids, part_ids)
        vecs[rows[ok]] = part[ok]
    return ids, vecs


def _rows_of(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the sorted ``ids`` holding the ``wanted`` ids, and which of ``wanted`` are present."""
    pos = np.searchsorted(ids, wanted)
    ok = pos < len(ids)
    ok[ok] = ids[pos[ok]] == wanted[ok]
    return pos, ok


def find_duplicates(engine, threshold: float = DEFAULT_THRESHOLD, nlist: int | None = None,
                    nprobe: int = NPROBE) -> DuplicateReport:
    """Groups of near-duplicates among the images of ``engine`` (an open :class:`Engine`), largest groups first.

    Images are linked when their cosine similarity is >= ``threshold``; one image stored under several paths
    (byte-identical copies) is a group too. Each group suggests one path to keep: the largest resolution,
    then the oldest file, then the shortest path.
    """
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must be within (0, 1], got {threshold}")
    t0 = time.perf_counter()
    ids, vecs = _stored_vectors(engine)
    labels, method = duplicate_components(vecs, threshold, nlist=nlist, nprobe=nprobe)
    states = engine.store.file_states()  # path -> FileState(size, mtime_ns, image_id, ...)
    rows_f, ok = _rows_of(ids, np.fromiter((v.image_id for v in states.values()), np.int64, len(states)))
    n_paths = np.bincount(rows_f[ok], minlength=len(ids))
    sizes = np.bincount(labels, minlength=1)[labels] if len(ids) else np.zeros(0, np.int64)
    rows = np.flatnonzero((sizes > 1) | (n_paths > 1))
    by_label: dict[int, list[int]] = {}
    for r in rows.tolist():
        by_label.setdefault(int(labels[r]), []).append(r)
    meta: dict = {}
    for s in range(0, len(rows), 500):  # bounded IN lists
        meta.update(engine.store.lookup(ids[rows[s:s + 500]].tolist()))
    paths_of: dict[int, list[tuple[str, int, int]]] = {}
    for p, st in states.items():
        if st.image_id in meta:
            paths_of.setdefault(st.image_id, []).append((p, st.size, st.mtime_ns))
    groups = []
    for members in by_label.values():
        g = _group(members, ids, vecs, meta, paths_of)
        if g is not None:
            groups.append(g)
    groups.sort(key=lambda g: (-len(g.files), -g.reclaimable, g.keep))
    for k, g in enumerate(groups, 1):
        g.id = k
    return DuplicateReport(threshold=float(threshold), images=len(ids), method=method,
                           seconds=time.perf_counter() - t0, groups=groups)


def _group(rows: list[int], ids: np.ndarray, vecs: np.ndarray, meta: dict, paths_of: dict) -> DuplicateGroup | None:
    """A group from its rows: every path, the suggested keeper, each image's similarity to the keeper's."""
    files = []
    for r in rows:
        iid = int(ids[r])
        if iid not in meta:  # removed by a concurrent writer
            continue
        sha, w, h, _ = meta[iid]
        for p, size, mtime_ns in sorted(paths_of.get(iid, [])):
            files.append((r, DuplicateFile(path=p, image_id=iid, sha256=sha, width=int(w), height=int(h),
                                           size=int(size), mtime=mtime_ns / 1e9, similarity=1.0)))
    if len(files) < 2:
        return None
    keep_row, best = min(files, key=lambda rf: (-rf[1].width * rf[1].height, rf[1].mtime, len(rf[1].path), rf[1].path))
    best.keep = True
    for r, f in files:
        f.similarity = 1.0 if r == keep_row else float(np.clip(vecs[r] @ vecs[keep_row], -1.0, 1.0))
    out = sorted((f for _, f in files), key=lambda f: (not f.keep, -f.similarity, f.path))
    return DuplicateGroup(id=0, keep=best.path, files=out)
