"""ANN index benchmark at scale: build time, bytes/vector, peak RSS, recall@10 vs exact, single/batch latency.

    nice -n 10 .venv/bin/python -m benchmarks.ann --n 1000000 --dim 256 --queries 10000 \
        --out docs/ann-1m-256.json --plot docs/ann-1m-256.png

Base vectors are clustered synthetic unit vectors (``--source synthetic``, benchmarks/synthetic.py, as in benchmarks/search.py) or
vectors shaped like real embeddings (``--source real``): efficientnet_lite0 embeddings of every shared CIFAR-10
and MNIST sample image (5,984), PCA-projected to ``--dim`` when it is below the embedder's 1280, and grown to n
by points between a real embedding and one of its 10 nearest real neighbours plus small Gaussian noise. This
checks that the synthetic figures hold on real embedding geometry. Queries are held-out
points of the same distribution; recall@10 is measured against exact inner-product search over all queries.

Each index type is built in its own child process (so the peak RSS reported is that index's, not the
benchmark's): the base vectors are streamed from a raw float32 file in 50k-vector chunks, never held whole.
IVF indexes share one coarse quantizer (IVF{nlist}, k-means with 10 iterations), trained once on a 200k sample,
and one assignment of the base vectors to it; each IVF row's build time includes both shared steps. "Refined" rows re-rank the top ``k * k_factor`` candidates of a compressed index with exact
vectors: ``RFlat`` keeps them in RAM (IndexRefineFlat), ``disk`` reads them from the raw vector file on disk
(what lookalike can do with the vectors it stores), so the in-RAM cost stays the compressed code.
``--ondisk`` also measures an IVF index whose inverted lists are memory-mapped from disk (IO_FLAG_MMAP),
warm and with the file's pages dropped from the page cache before every query (cold).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from benchmarks.synthetic import clustered_chunks

from lookalike.retrieval.metrics import recall_at_k

CHUNK = 50_000
QUANT_NITER = 10  # k-means iterations for the shared coarse quantizer (faiss default 25; 10 to fit the shared CPU)
_KEEP: list = []
TRAIN_N = 200_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clustered_to_file(path: Path, n: int, dim: int, n_clusters: int, seed: int, spread: float = 1.0) -> None:
    """Write n clustered unit vectors as raw float32 to ``path`` without holding them all."""
    with open(path, "wb") as fh:
        for x in clustered_chunks(n, dim, n_clusters, seed, spread, chunk=CHUNK):
            fh.write(x.tobytes())


def real_embeddings(cache_dir: Path, model: str, datasets: list[str]) -> np.ndarray:
    """Unit embeddings of every image (train and test splits) of the shared sample datasets (cached)."""
    from lookalike.retrieval.embedders import get_embedder
    from lookalike.training.datasets import load_images

    tag = "-".join(datasets)
    cache = cache_dir / f"real-{model.replace('@', '_').replace(':', '_')}-{tag}.npy"
    if cache.exists():
        return np.load(cache)
    e = get_embedder(model)
    parts = []
    for ds in datasets:
        for split in ("train", "test"):
            imgs = load_images(ds, split=split).images
            parts += [e.embed_images(list(imgs[i : i + 64])) for i in range(0, len(imgs), 64)]
    emb = np.concatenate(parts).astype(np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    return emb


def pca_project(emb: np.ndarray, dim: int) -> np.ndarray:
    """Project onto the top ``dim`` principal axes of ``emb`` (centred), re-normalised to unit length."""
    if dim >= emb.shape[1]:
        return emb
    mean = emb.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
    x = (emb - mean) @ vt[:dim].T
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def real_to_file(path: Path, n: int, seed: int, emb: np.ndarray, noise: float, neighbours: int = 10) -> int:
    """Write n vectors shaped like the real embeddings ``emb`` (unit length).

    Each is a random point on the segment between a real embedding and one of its ``neighbours`` nearest real
    embeddings, plus Gaussian noise of norm ``noise`` (SMOTE-style): new points fill the real manifold's
    neighbourhoods instead of forming isolated balls around copies of the same few thousand points.
    """
    dim = emb.shape[1]
    flat = faiss.IndexFlatIP(dim)
    flat.add(emb)
    _, nn = flat.search(emb, neighbours + 1)
    nn = nn[:, 1:]
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        for s in range(0, n, CHUNK):
            m = min(CHUNK, n - s)
            a = rng.integers(0, len(emb), m)
            b = nn[a, rng.integers(0, neighbours, m)]
            t = rng.random((m, 1), dtype=np.float32)
            x = emb[a] + t * (emb[b] - emb[a])
            x += rng.standard_normal((m, dim)).astype(np.float32) * (noise / np.sqrt(dim))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            fh.write(x.astype(np.float32).tobytes())
    return dim


def read_rows(path: Path, dim: int, start: int, count: int) -> np.ndarray:
    return np.fromfile(path, dtype=np.float32, count=count * dim, offset=start * dim * 4).reshape(-1, dim)


def chunks(path: Path, n: int, dim: int):
    for s in range(0, n, CHUNK):
        yield s, read_rows(path, dim, s, min(CHUNK, n - s))


def prepare(cache: Path, args) -> dict:
    """Base, query and ground-truth files (cached by their parameters)."""
    cache.mkdir(parents=True, exist_ok=True)
    meta_path = cache / "meta.json"
    if meta_path.exists():
        return json.loads(meta_path.read_text())
    t0 = time.perf_counter()
    total = args.n + args.queries
    allf = cache / "all.f32"
    if args.source == "synthetic":
        dim = args.dim
        clustered_to_file(allf, total, dim, n_clusters=max(10, args.n // 100), seed=args.seed)
    else:
        emb = real_embeddings(cache.parent, args.real_model, args.real_datasets)
        emb = pca_project(emb, args.dim) if args.dim else emb
        dim = real_to_file(allf, total, args.seed, emb, args.real_noise)
    # queries: the last rows (held out); base: the first n (same file, read by offset)
    q = read_rows(allf, dim, args.n, args.queries)
    np.save(cache / "queries.npy", q)
    exact = faiss.IndexFlatIP(dim)
    faiss.omp_set_num_threads(args.threads)
    # exact top-10 over the base, chunk by chunk, merged
    best_s = np.full((len(q), 10), -np.inf, np.float32)
    best_i = np.full((len(q), 10), -1, np.int64)
    for s, x in chunks(allf, args.n, dim):
        exact.reset()
        exact.add(x)
        sc, ix = exact.search(q, 10)
        ix = ix + s
        cs = np.concatenate([best_s, sc], 1)
        ci = np.concatenate([best_i, ix], 1)
        o = np.argsort(-cs, axis=1, kind="stable")[:, :10]
        best_s, best_i = np.take_along_axis(cs, o, 1), np.take_along_axis(ci, o, 1)
    np.save(cache / "truth.npy", best_i)
    meta = {"n": args.n, "dim": dim, "queries": args.queries, "source": args.source, "prepare_s": round(time.perf_counter() - t0, 1)}
    meta_path.write_text(json.dumps(meta))
    return meta


# ---------------------------------------------------------------------------------------- child: one index
def _quantizer(cache: Path, dim: int, nlist: int, n: int, threads: int) -> tuple[faiss.Index, float]:
    qpath = cache / f"quantizer-{nlist}.faiss"
    tpath = cache / f"quantizer-{nlist}.json"
    if qpath.exists():
        return faiss.read_index(str(qpath)), json.loads(tpath.read_text())["train_s"]
    t0 = time.perf_counter()
    train = _train_sample(cache, dim, n)
    cp = faiss.ClusteringParameters()
    cp.niter = QUANT_NITER
    clus = faiss.Clustering(dim, nlist, cp)
    q = faiss.IndexFlatIP(dim)
    clus.spherical = False
    clus.train(train, q)
    dt = time.perf_counter() - t0
    faiss.write_index(q, str(qpath))
    tpath.write_text(json.dumps({"train_s": dt}))
    return q, dt


def _train_sample(cache: Path, dim: int, n: int) -> np.ndarray:
    """A TRAIN_N sample spread over the base (every (n/TRAIN_N)-th chunk slice), like Engine._training_sample."""
    m = min(n, TRAIN_N)
    rng = np.random.default_rng(1)
    pick = np.sort(rng.choice(n, m, replace=False))
    out = np.empty((m, dim), np.float32)
    at = 0
    for s, x in chunks(cache / "all.f32", n, dim):
        sel = pick[(pick >= s) & (pick < s + len(x))] - s
        out[at : at + len(sel)] = x[sel]
        at += len(sel)
    return out


def _assign(cache: Path, quant: faiss.Index, nlist: int, dim: int, n: int) -> tuple[np.ndarray, float]:
    """Nearest coarse centroid of every base vector, computed once and shared by the IVF variants."""
    lpath = cache / f"assign-{nlist}.npy"
    tpath = cache / f"assign-{nlist}.json"
    if lpath.exists():
        return np.load(lpath), json.loads(tpath.read_text())["assign_s"]
    t0 = time.perf_counter()
    labels = np.empty(n, np.int64)
    for s, x in chunks(cache / "all.f32", n, dim):
        labels[s : s + len(x)] = quant.search(x, 1)[1][:, 0]
    dt = time.perf_counter() - t0
    np.save(lpath, labels)
    tpath.write_text(json.dumps({"assign_s": dt}))
    return labels, dt


def build(spec: str, cache: Path, dim: int, n: int, threads: int) -> tuple[faiss.Index, float]:
    """spec: Flat | HNSW32 | IVF4096,Flat | IVF4096,PQ64 | OPQ32_128,IVF4096,PQ32 (factory strings)."""
    faiss.omp_set_num_threads(threads)
    t0 = time.perf_counter()
    extra = 0.0
    if spec.startswith("IVF") and "," in spec:
        nlist = int(spec.split(",")[0][3:])
        quant, extra = _quantizer(cache, dim, nlist, n, threads)
        rest = spec.split(",", 1)[1]
        t0 = time.perf_counter()
        if rest == "Flat":
            index = faiss.IndexIVFFlat(quant, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        elif rest.startswith("PQ"):
            index = faiss.IndexIVFPQ(quant, dim, nlist, int(rest[2:]), 8, faiss.METRIC_INNER_PRODUCT)
            index.train(_train_sample(cache, dim, n))
        else:
            raise SystemExit(f"unsupported spec {spec}")
        index.own_fields = False
        _KEEP.append(quant)  # the IVF index does not own its (shared) quantizer
        labels, assign_s = _assign(cache, quant, nlist, dim, n)
        extra += assign_s
        for s, x in chunks(cache / "all.f32", n, dim):
            lab = np.ascontiguousarray(labels[s : s + len(x)])
            index.add_core(len(x), faiss.swig_ptr(x), None, faiss.swig_ptr(lab))
        return index, time.perf_counter() - t0 + extra
    else:
        index = faiss.index_factory(dim, spec, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            index.train(_train_sample(cache, dim, n))
    for _, x in chunks(cache / "all.f32", n, dim):
        index.add(x)
    return index, time.perf_counter() - t0 + extra


def _set(index: faiss.Index, ef: int | None, nprobe: int | None) -> None:
    ps = faiss.ParameterSpace()
    if ef is not None:
        ps.set_index_parameter(index, "efSearch", ef)
    if nprobe is not None:
        ps.set_index_parameter(index, "nprobe", nprobe)


class DiskRerank:
    """Re-rank a compressed index's top k*k_factor with exact vectors read from the raw file (np.memmap)."""

    def __init__(self, index: faiss.Index, path: Path, n: int, dim: int, k_factor: int) -> None:
        self.index, self.k_factor = index, k_factor
        self.raw = np.memmap(path, dtype=np.float32, mode="r", shape=(n, dim))

    def search(self, q: np.ndarray, k: int):
        _, cand = self.index.search(q, k * self.k_factor)
        out_s = np.empty((len(q), k), np.float32)
        out_i = np.empty((len(q), k), np.int64)
        for r in range(len(q)):
            c = cand[r][cand[r] >= 0]
            order = np.argsort(c)  # read rows in file order
            c = c[order]
            sc = self.raw[c] @ q[r]
            top = np.argsort(-sc)[:k]
            out_s[r, : len(top)], out_i[r, : len(top)] = sc[top], c[top]
        return out_s, out_i


def evaluate(searcher, queries: np.ndarray, truth: np.ndarray, threads: int, lat_queries: int, lat_budget_s: float,
             batch: int, cold_file: Path | None = None) -> dict:
    k = 10
    faiss.omp_set_num_threads(threads)
    found = np.empty((len(queries), k), np.int64)
    bl = []
    for s in range(0, len(queries), batch):  # batches (all threads): recall over every query + batch latency
        t = time.perf_counter()
        _, ids = searcher.search(queries[s : s + batch], k)
        bl.append((time.perf_counter() - t) * 1000)
        found[s : s + batch] = ids
    faiss.omp_set_num_threads(1)  # a single query on one thread
    for q in queries[:10]:
        searcher.search(q[None], k)
    lat, t_end = [], time.perf_counter() + lat_budget_s
    for i in range(min(lat_queries, len(queries))):
        if cold_file is not None:
            fd = os.open(cold_file, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        t = time.perf_counter()
        searcher.search(queries[i : i + 1], k)
        lat.append((time.perf_counter() - t) * 1000)
        if i >= 50 and time.perf_counter() > t_end:
            break
    faiss.omp_set_num_threads(threads)
    return {"recall_at_10": round(recall_at_k(found, truth), 4), "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3), "latency_queries": len(lat),
            "batch": batch, "batch_p50_ms": round(float(np.percentile(bl, 50)), 2),
            "batch_per_query_ms": round(float(np.percentile(bl, 50)) / batch, 4)}


def child(args) -> int:
    cache = Path(args.cache)
    meta = json.loads((cache / "meta.json").read_text())
    n, dim = meta["n"], meta["dim"]
    queries = np.load(cache / "queries.npy")
    truth = np.load(cache / "truth.npy")
    if args.child == "Flat" and args.flat_queries:  # exact search: recall is 1 by construction; time a subset
        queries, truth = queries[: args.flat_queries], truth[: args.flat_queries]
    rss0 = _rss_mb()
    index, build_s = build(args.child, cache, dim, n, args.threads)
    nbytes = len(faiss.serialize_index(index))
    rss_build = _rss_mb()
    base = {"index": args.child, "n": n, "dim": dim, "source": meta["source"], "build_s": round(build_s, 1),
            "bytes_per_vector": round(nbytes / n, 1), "index_mb": round(nbytes / 2**20, 1),
            "peak_rss_mb": round(rss_build, 1), "rss_before_build_mb": round(rss0, 1), "threads": args.threads}
    rows = []

    def emit(row):
        row["peak_rss_mb"] = round(_rss_mb(), 1)
        rows.append(row)
        print(json.dumps(row), flush=True)

    ev = dict(threads=args.threads, lat_queries=args.lat_queries, lat_budget_s=args.lat_budget, batch=args.batch)
    if args.child.startswith("HNSW"):
        for ef in args.ef:
            _set(index, ef, None)
            emit({**base, "params": f"efSearch={ef}", **evaluate(index, queries, truth, **ev)})
    elif "IVF" in args.child and "PQ" in args.child:
        for npb in args.nprobe_pq:
            _set(index, None, npb)
            emit({**base, "params": f"nprobe={npb}", **evaluate(index, queries, truth, **ev)})
            for kf in args.k_factor:
                rr = DiskRerank(index, cache / "all.f32", n, dim, kf)
                emit({**base, "params": f"nprobe={npb} +rerank top{10 * kf} from disk", **evaluate(rr, queries, truth, **ev)})
        # in-RAM refinement (IndexRefineFlat keeps every raw vector: bytes/vector grows by 4*dim)
        xb = read_rows(cache / "all.f32", dim, 0, n)
        ref = faiss.IndexRefineFlat(index, faiss.swig_ptr(xb))
        del xb
        b2 = {**base, "index": args.child + ",RFlat", "bytes_per_vector": round(base["bytes_per_vector"] + 4 * dim, 1)}
        for npb in args.nprobe_pq:
            _set(index, None, npb)
            for kf in args.k_factor:
                ref.k_factor = kf
                emit({**b2, "params": f"nprobe={npb} k_factor={kf}", **evaluate(ref, queries, truth, **ev)})
    elif "IVF" in args.child:
        for npb in args.nprobe:
            _set(index, None, npb)
            emit({**base, "params": f"nprobe={npb}", **evaluate(index, queries, truth, **ev)})
        if args.ondisk:
            path = cache / f"ondisk-{args.child.replace(',', '_')}.faiss"
            faiss.write_index(index, str(path))
            del index
            mm = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
            b3 = {**base, "index": args.child + " (mmap)", "rss_after_mmap_open_mb": round(_rss_mb(), 1)}
            for npb in args.ondisk_nprobe:
                _set(mm, None, npb)
                emit({**b3, "params": f"nprobe={npb} warm", **evaluate(mm, queries, truth, **ev)})
                emit({**b3, "params": f"nprobe={npb} cold (page cache dropped per query)",
                      **evaluate(mm, queries, truth, **{**ev, "lat_queries": min(args.lat_queries, 200)}, cold_file=path)})
            path.unlink()
    else:
        emit({**base, "params": "", **evaluate(index, queries, truth, **ev)})
    return 0


# ---------------------------------------------------------------------------------------- parent
def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=90)
    groups: dict[str, list[dict]] = {}
    for r in rows:
        tag = r["index"] + (" +disk rerank" if "disk" in r["params"] and "mmap" not in r["index"] else "")
        tag += " cold" if "cold" in r["params"] else ""
        groups.setdefault(tag, []).append(r)
    colours = plt.get_cmap("tab20").colors
    for j, (tag, rs) in enumerate(groups.items()):
        ax.plot([r["p50_ms"] for r in rs], [r["recall_at_10"] for r in rs], "-", marker="osD^v<>"[j % 7],
                color=colours[j % len(colours)], label=tag, ms=4)
    ax.set_xscale("log")
    ax.set_xlabel("single-query p50 latency, ms (1 thread, log)")
    ax.set_ylabel("recall@10 vs exact")
    ax.axhline(0.95, color="grey", lw=0.5, ls="--")
    ax.axvline(1.0, color="grey", lw=0.5, ls="--")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256, help="synthetic: dimension; real: PCA-project to this (>= 1280 keeps it)")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--source", choices=["synthetic", "real"], default="synthetic")
    ap.add_argument("--real-model", default="efficientnet_lite0", help="embedder of the real sample images")
    ap.add_argument("--real-datasets", nargs="+", default=["cifar10-sample", "mnist-sample"])
    ap.add_argument("--real-noise", type=float, default=0.1, help="perturbation norm relative to a unit vector")
    ap.add_argument("--types", nargs="+", default=["Flat", "HNSW32", "IVF4096,Flat", "IVF4096,PQ32", "IVF4096,PQ64",
                                                   "OPQ32_128,IVF4096,PQ32"])
    ap.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    ap.add_argument("--nprobe", type=int, nargs="+", default=[1, 4, 16, 32, 64, 128])
    ap.add_argument("--nprobe-pq", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--k-factor", type=int, nargs="+", default=[10], help="re-rank the top k*F of compressed indexes")
    ap.add_argument("--ondisk", action="store_true", help="also measure the IVF index memory-mapped from disk")
    ap.add_argument("--ondisk-nprobe", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--flat-queries", type=int, default=1000, help="queries evaluated on Flat (exact; 0 = all)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lat-queries", type=int, default=2000, help="single queries timed (at most)")
    ap.add_argument("--lat-budget", type=float, default=20.0, help="seconds of single-query timing per row (min 50 queries)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None, help="folder for vectors/ground truth (default a temp folder, kept)")
    ap.add_argument("--out", default=None, help="write rows as JSON here")
    ap.add_argument("--plot", default=None, help="recall-vs-latency PNG")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)

    # busy-waiting OpenMP threads collapse on a shared CPU: let idle threads sleep (children inherit this)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cache = Path(args.cache or tempfile.gettempdir()) / f"lookalike-ann-{args.source}-{args.n}-{args.dim}-{args.queries}-{args.seed}"
    t0 = time.perf_counter()
    meta = prepare(cache, args)
    print(json.dumps({"prepared": str(cache), **meta}), file=sys.stderr, flush=True)
    rows = []
    for spec in args.types:
        cmd = [sys.executable, "-m", "benchmarks.ann", "--child", spec, "--cache", str(cache.parent)]
        cmd[-1] = str(cache)
        for a in ("threads", "batch", "lat_queries", "lat_budget", "flat_queries"):
            cmd += [f"--{a.replace('_', '-')}", str(getattr(args, a))]
        for a in ("ef", "nprobe", "nprobe_pq", "ondisk_nprobe", "k_factor"):
            cmd += [f"--{a.replace('_', '-')}", *map(str, getattr(args, a))]
        if args.ondisk:
            cmd.append("--ondisk")
        p = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        for line in p.stdout.splitlines():
            if line.startswith("{"):
                rows.append(json.loads(line))
                print(line, file=sys.stderr, flush=True)
        if p.returncode:
            print(f"{spec}: child failed with {p.returncode}", file=sys.stderr)
        if args.out:
            Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("| index | params | build s | bytes/vec | peak RSS MB | recall@10 | p50 ms | p95 ms | batch100 ms/query |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['index']} | {r['params']} | {r['build_s']} | {r['bytes_per_vector']} | {r['peak_rss_mb']:.0f} | "
              f"{r['recall_at_10']} | {r['p50_ms']} | {r['p95_ms']} | {r['batch_per_query_ms']} |")
    if args.plot and rows:
        plot(rows, Path(args.plot), f"{meta['n']:,} x {meta['dim']}-d {meta['source']}, {meta['queries']:,} queries, {os.cpu_count()} CPU cores")
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
