"""Groups of near-duplicate images: resized, recompressed, cropped or lightly edited copies of one picture.

Two images are copies when their calibrated copy score (:mod:`lookalike.retrieval.calibration`, both channels,
normalised against a background set) reaches the threshold; for a model without a scorer, when their cosine
similarity does. Candidate pairs: up to :data:`EXACT_MAX` images each image's nearest neighbours by both channels
(blocked matrix products); above, the vectors are split into about sqrt(n) k-means cells and each vector is
compared with the members of its :data:`NPROBE` nearest cells. Groups are stars around the file to keep, never
chains: every member is a copy of the kept image. Byte-identical files share one stored image, so each group
lists every path of each image.

    report = find_duplicates(engine, threshold=0.9)
    for g in report.groups:
        print(g.keep, [f.path for f in g.files if not f.keep])
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

import numpy as np

from lookalike.indexer.signature import SIGNATURE_DIM
from lookalike.indexer.store import rows_of

__all__ = ["DEFAULT_THRESHOLD", "DuplicateFile", "DuplicateGroup", "DuplicateReport", "find_duplicates",
           "duplicate_components"]

# Best F1 on the DEV photos of benchmarks/duplicates.py with efficientnet_lite0 (pair precision and recall 1.000
# there; 0.993 / 0.973 on the evaluation photos) and again with the default ntxent-copies (1.000 / 1.000 on dev;
# 0.993 / 0.960 on eval); docs/history/benchmarks-2026-11.md section 8.
DEFAULT_THRESHOLD = 0.86
EXACT_MAX = 20_000  # every pair up to this many images (about 8 s for 20k x 1280-d on 2 busy cores)
NPROBE = 8  # cells each vector is compared with above EXACT_MAX (pair recall 1.000 at 100k, benchmarks/duplicates.py)
BLOCK = 1024  # query rows per matrix product
EPS = 1e-6  # float32 rounding: the same pixels score 0.9999999, which still counts at threshold 1
# with a copy score: candidate pairs are those at cosine >= COPY_COS_FLOOR, plus (up to EXACT_MAX images) each
# image's LOW_NEIGHBOURS nearest by the low-frequency signature; each is then scored
COPY_COS_FLOOR = 0.5
COS_NEIGHBOURS = 16
LOW_NEIGHBOURS = 8
COPY_COS_FLOOR_CELLS = 0.75  # above EXACT_MAX: pairs from the k-means cells at this cosine


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
    copy_score: float | None = None  # calibrated copy score against the kept image (None: cosine grouping)
    exact: bool = False              # byte-identical to the kept file

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
    score: str = "cosine"  # what the threshold applies to: "copy score" (calibrated) or "cosine"

    @property
    def files(self) -> int:
        return sum(len(g.files) for g in self.groups)

    @property
    def reclaimable(self) -> int:
        return sum(g.reclaimable for g in self.groups)

    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "score": self.score, "images": self.images, "method": self.method,
                "seconds": round(self.seconds, 3), "files": self.files, "reclaimable": self.reclaimable,
                "groups": [g.to_dict() for g in self.groups]}

    def rows(self) -> list[dict]:
        """One flat row per file (for CSV): group, keep, path, similarity, size and dates."""
        return [{"group": g.id, "keep": int(f.keep), "path": f.path, "similarity": round(f.similarity, 6),
                 "copy_score": "" if f.copy_score is None else round(f.copy_score, 6), "exact": int(f.exact),
                 "width": f.width, "height": f.height, "size": f.size,
                 "modified": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(f.mtime)), "sha256": f.sha256}
                for g in self.groups for f in g.files]


def cell_count(n: int) -> int:
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
    a, b, method = candidate_pairs(vecs, threshold, nlist, nprobe)
    return connected_labels(len(vecs), a, b), method


def connected_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Component label per node of the undirected graph on ``n`` nodes with edges (a[i], b[i]); components are
    numbered in the order of their smallest node (as scipy's ``connected_components`` numbers them). Numpy only."""
    labels = np.arange(n, dtype=np.int64)
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    while len(a):
        m = np.minimum(labels[a], labels[b])
        before = labels.copy()
        np.minimum.at(labels, a, m)
        np.minimum.at(labels, b, m)
        while True:  # pointer jumping: every node straight to its component's smallest node seen so far
            nxt = labels[labels]
            if np.array_equal(nxt, labels):
                break
            labels = nxt
        if np.array_equal(labels, before):
            break
    return np.unique(labels, return_inverse=True)[1].astype(np.int32)


def candidate_pairs(vecs: np.ndarray, floor: float, nlist: int | None, nprobe: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Row pairs (a, b) with cosine >= floor (each at least once), and the method."""
    n = len(vecs)
    nlist = cell_count(n) if nlist is None else max(1, int(nlist))
    nprobe = min(nprobe, nlist)
    rows, cols = [], []
    for a, b in _edges(vecs, float(floor) - EPS, nlist, nprobe):
        if len(a):
            rows.append(a.astype(np.int32))
            cols.append(b.astype(np.int32))
    a = np.concatenate(rows) if rows else np.zeros(0, np.int32)
    b = np.concatenate(cols) if cols else np.zeros(0, np.int32)
    return a, b, "exact" if nlist == 1 else f"cells {nlist}, probe {nprobe}"


def _knn_pairs(x: np.ndarray, has: np.ndarray, k: int, floor: float = -1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest rows by inner product, at least ``floor`` (rows in ``has`` only; exact, blocked),
    and each row's DENS_TOP best inner products (-inf where fewer), for its collection closeness."""
    from .calibration import DENS_TOP

    rows = np.flatnonzero(has)
    dens = np.full((len(x), DENS_TOP), -np.inf)
    if len(rows) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), dens
    s = x[rows]
    k = min(max(k, DENS_TOP), len(rows) - 1)
    out_a, out_b = [], []
    for st in range(0, len(rows), BLOCK):
        sim = s[st:st + BLOCK] @ s.T
        sim[np.arange(len(sim)), np.arange(st, st + len(sim))] = -9.0
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(sim, top, axis=1)
        best = -np.sort(-vals, axis=1)[:, :DENS_TOP]
        dens[rows[st:st + len(sim)], :best.shape[1]] = best
        ok = vals >= floor
        out_a.append(np.repeat(rows[st:st + len(sim)], k)[ok.ravel()])
        out_b.append(rows[top.ravel()][ok.ravel()])
    return np.concatenate(out_a), np.concatenate(out_b), dens


def _stored_vectors(engine) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of every stored image, filled into one preallocated array (no second copy)."""
    ids = engine.store.image_ids()
    vecs = np.zeros((len(ids), engine.dim), np.float32)  # a row deleted meanwhile stays zero: never linked
    for part_ids, part in engine.store.iter_vectors():
        rows, ok = rows_of(ids, part_ids)
        vecs[rows[ok]] = part[ok]
    return ids, vecs


def _pair_density(vecs: np.ndarray, sigs: np.ndarray, has: np.ndarray, a: np.ndarray,
                  b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's DENS_TOP best inner products among the candidate pairs found in k-means cells (above EXACT_MAX;
    -inf where fewer were found), per channel."""
    from .calibration import DENS_TOP

    n = len(vecs)
    out = []
    for x, ok in ((vecs, np.ones(n, bool)), (sigs, has)):
        sim = np.einsum("ij,ij->i", x[a], x[b]) if len(a) else np.zeros(0)
        sim = np.where(ok[a] & ok[b], sim, -1.0)
        rows = np.concatenate([a, b])
        vals = np.concatenate([sim, sim])
        order = np.lexsort((-vals, rows))
        rows, vals = rows[order], vals[order]
        start = np.searchsorted(rows, np.arange(n))
        rank = np.arange(len(rows)) - start[rows] if len(rows) else np.zeros(0, np.int64)
        keep = rank < DENS_TOP
        top = np.full((n, DENS_TOP), -np.inf)
        top[rows[keep], rank[keep]] = vals[keep]
        out.append(top)
    return out[0], out[1]


def _copy_scores(scorer, vecs: np.ndarray, sigs: np.ndarray, has: np.ndarray, sides: np.ndarray,
                 dens: tuple[np.ndarray, np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The copy score of each pair (a, b): the lower of a-as-query and b-as-query (each side's background and
    collection closeness)."""
    from .calibration import density_rows, pair_features

    bgc, bgl = scorer.background(vecs, sigs)
    dc, dl = density_rows(dens[0], bgc), density_rows(dens[1], bgl)
    cos = np.einsum("ij,ij->i", vecs[a], vecs[b])
    low = np.where(has[a] & has[b], np.einsum("ij,ij->i", sigs[a], sigs[b]), 0.0)
    side = np.minimum(sides[a], sides[b])
    pa = scorer.probability(pair_features(cos, low, bgc[a], bgl[a], side, dc[a], dl[a]))
    pb = scorer.probability(pair_features(cos, low, bgc[b], bgl[b], side, dc[b], dl[b]))
    return np.minimum(pa, pb)


def find_duplicates(engine, threshold: float | None = None, nlist: int | None = None,
                    nprobe: int = NPROBE, scorer: object = "auto") -> DuplicateReport:
    """Groups of near-duplicates among the images of ``engine`` (an open :class:`Engine`), largest groups first.

    With the model's calibrated copy score (:mod:`lookalike.retrieval.calibration`; ``scorer="auto"``), two
    images are copies when their copy score is >= ``threshold`` (default: the scorer's); else when their cosine
    similarity is (default :data:`DEFAULT_THRESHOLD`). Groups are stars, never chains: images are taken best
    first (largest resolution, then oldest, then shortest path), and each one not yet grouped keeps every
    ungrouped copy of itself; so every member is a copy of the file the group keeps. One image stored under
    several paths (byte-identical copies) is a group too.
    """
    if scorer == "auto":
        from .calibration import load_scorer

        scorer = load_scorer(engine.model_name, engine.dim)
    if threshold is None:
        threshold = scorer.threshold if scorer is not None else DEFAULT_THRESHOLD
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must be within (0, 1], got {threshold}")
    t0 = time.perf_counter()
    ids, vecs = _stored_vectors(engine)
    states = engine.store.file_states()  # path -> FileState(size, mtime_ns, image_id, ...)
    meta: dict = {}
    for s in range(0, len(ids), 500):  # bounded IN lists
        meta.update(engine.store.lookup(ids[s:s + 500].tolist()))
    if scorer is not None:
        sig_ids, sig_mat = engine.store.signatures()
        rows_s, ok_s = rows_of(ids, sig_ids)
        sigs = np.zeros((len(ids), SIGNATURE_DIM), np.float32)
        sigs[rows_s[ok_s]] = sig_mat[ok_s]
        has = np.zeros(len(ids), bool)
        has[rows_s[ok_s]] = True
        sides = np.asarray([max(meta[int(i)].width, meta[int(i)].height) if int(i) in meta else 0 for i in ids],
                           np.float64)
        if (cell_count(len(ids)) if nlist is None else max(1, int(nlist))) == 1:
            a, b, dens_c = _knn_pairs(vecs, np.ones(len(ids), bool), COS_NEIGHBOURS, COPY_COS_FLOOR)
            la, lb, dens_l = _knn_pairs(sigs, has, LOW_NEIGHBOURS)
            a, b, method = np.concatenate([a, la]), np.concatenate([b, lb]), "exact"
        else:
            a, b, method = candidate_pairs(vecs, COPY_COS_FLOOR_CELLS, nlist, nprobe)
            dens_c, dens_l = _pair_density(vecs, sigs, has, a, b)
        lo, hi = np.minimum(a, b), np.maximum(a, b)
        pairs = np.unique(np.stack([lo, hi], 1), axis=0) if len(a) else np.zeros((0, 2), np.int64)
        p = (_copy_scores(scorer, vecs, sigs, has, sides, (dens_c, dens_l), pairs[:, 0], pairs[:, 1]) if len(pairs)
             else np.zeros(0))
        keep = p >= float(threshold) - EPS
        edges = {(int(x), int(y)): float(q) for (x, y), q in zip(pairs[keep], p[keep])}
        method += ", copy score"
    else:
        a, b, method = candidate_pairs(vecs, threshold, nlist, nprobe)
        edges = {(int(min(x, y)), int(max(x, y))): None for x, y in zip(a.tolist(), b.tolist())}
    paths_of: dict[int, list[tuple[str, int, int]]] = {}
    for path, st in states.items():
        if st.image_id in meta:
            paths_of.setdefault(st.image_id, []).append((path, st.size, st.mtime_ns))
    groups = [g for g in (_group(members, ids, vecs, meta, paths_of, edges, scorer is not None)
                          for members in _stars(ids, meta, paths_of, edges)) if g is not None]
    groups.sort(key=lambda g: (-len(g.files), -g.reclaimable, g.keep))
    for k, g in enumerate(groups, 1):
        g.id = k
    return DuplicateReport(threshold=float(threshold), images=len(ids), method=method,
                           seconds=time.perf_counter() - t0, groups=groups,
                           score="copy score" if scorer is not None else "cosine")


def _preference(iid: int, meta: dict, paths_of: dict) -> tuple:
    """Sort key of an image as the file to keep: largest resolution, then oldest, then shortest path."""
    info = meta[iid]
    files = paths_of.get(iid) or [("", 0, 0)]
    oldest = min(files, key=lambda f: (f[2], len(f[0]), f[0]))
    return (-info.width * info.height, oldest[2], len(oldest[0]), oldest[0])


def _stars(ids: np.ndarray, meta: dict, paths_of: dict, edges: dict) -> list[list[int]]:
    """Rows of each group: best image first, then every ungrouped image linked to it."""
    adj: dict[int, list[int]] = {}
    for x, y in edges:
        adj.setdefault(x, []).append(y)
        adj.setdefault(y, []).append(x)
    multi = {r for r in range(len(ids)) if len(paths_of.get(int(ids[r]), ())) > 1}
    nodes = [r for r in set(adj) | multi if int(ids[r]) in meta]
    nodes.sort(key=lambda r: _preference(int(ids[r]), meta, paths_of))
    taken: set[int] = set()
    out = []
    for r in nodes:
        if r in taken:
            continue
        members = [r] + [m for m in adj.get(r, ()) if m not in taken and int(ids[m]) in meta]
        if len(members) > 1 or r in multi:
            taken.update(members)
            out.append(members)
    return out


def _group(rows: list[int], ids: np.ndarray, vecs: np.ndarray, meta: dict, paths_of: dict,
           edges: dict, scored: bool) -> DuplicateGroup | None:
    """A group from its rows (the keeper's first): every path, the suggested keeper, each file's similarity and
    (``scored``: copy-score grouping) copy score to the keeper's image."""
    keep_row = rows[0]
    files = []
    for r in rows:
        iid = int(ids[r])
        info = meta[iid]
        score = (1.0 if r == keep_row else edges.get((min(r, keep_row), max(r, keep_row)))) if scored else None
        for p, size, mtime_ns in sorted(paths_of.get(iid, [])):
            files.append((r, DuplicateFile(path=p, image_id=iid, sha256=info.sha256, width=int(info.width),
                                           height=int(info.height), size=int(size), mtime=mtime_ns / 1e9,
                                           similarity=1.0, copy_score=score)))
    if len(files) < 2:
        return None
    keepers = [rf for rf in files if rf[0] == keep_row]
    _, best = min(keepers, key=lambda rf: (rf[1].mtime, len(rf[1].path), rf[1].path))
    best.keep = True
    for r, f in files:
        f.similarity = 1.0 if r == keep_row else float(np.clip(vecs[r] @ vecs[keep_row], -1.0, 1.0))
        f.exact = f.sha256 == best.sha256
    out = sorted((f for _, f in files), key=lambda f: (not f.keep, -f.similarity, f.path))
    return DuplicateGroup(id=0, keep=best.path, files=out)
