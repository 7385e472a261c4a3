"""Noisy-query benchmark: image quality and retrieval accuracy of noisy / classical / DDPM / DDIM queries."""
from __future__ import annotations

import json
import time

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from lookalike.retrieval.denoise.noise import add_noise, from_unit, psnr, to_unit

__all__ = ["default_embedder", "evaluate_sigma", "run_single", "knn_class", "METHODS"]

METHODS = ("noisy", "classical", "ddpm", "ddim")


def _key(dataset: str) -> str:
    return "mnist" if "mnist" in dataset.lower() else "cifar10"


def default_embedder(dataset: str) -> str:
    """Best available embedder for the dataset: the trained Siamese model when registered, else raw pixels."""
    from lookalike.retrieval.embedders import list_embedders

    names = list_embedders()
    want = "siamese-mnist" if _key(dataset) == "mnist" else "siamese-cifar10"
    if want in names:
        return want
    return "pixels-gray" if _key(dataset) == "mnist" else "pixels"


def _pils(x: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(a).convert("RGB") for a in from_unit(x)]


class Setup:
    """Clean gallery (train split) and a fixed subsample of test queries, embedded once."""

    def __init__(self, dataset: str, embedder: str, n_queries: int, seed: int) -> None:
        from lookalike.data.samples import load_sample
        from lookalike.retrieval.denoise import resolve_model
        from lookalike.retrieval.embedders import get_embedder

        key = _key(dataset)
        tr, te = load_sample(key, "train"), load_sample(key, "test")
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(len(te), size=min(n_queries, len(te)), replace=False))
        self.dataset, self.embedder_name, self.seed = key, embedder, seed
        self.x = to_unit(te.images[idx])
        self.labels = te.labels[idx]
        self.g_labels = tr.labels
        self.emb = get_embedder(embedder)
        self.g_emb = self.embed(to_unit(tr.images))
        self.model_name = f"ddpm-{key}"
        self.model = resolve_model(self.model_name)

    def embed(self, x: torch.Tensor) -> np.ndarray:
        return self.emb.embed_images(_pils(x), batch_size=128)


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    from skimage.metrics import structural_similarity

    aa, bb = a.clamp(-1, 1).numpy(), b.clamp(-1, 1).numpy()
    vals = [structural_similarity(p, q, data_range=2.0, channel_axis=0) for p, q in zip(aa, bb)]
    return float(np.mean(vals))


def knn_class(q: np.ndarray, g: np.ndarray, g_labels: np.ndarray, k: int = 10) -> np.ndarray:
    """Majority label of each query's k nearest gallery vectors (a denoised query in another class: hallucination)."""
    from lookalike.retrieval.metrics import knn

    _, idx = knn(q, g, k=k)
    votes = g_labels[idx]
    return np.array([np.bincount(v, minlength=int(g_labels.max()) + 1).argmax() for v in votes])


def evaluate_sigma(s: Setup, sigma: float, methods: tuple[str, ...] = METHODS, steps: int = 20,
                   latency_queries: int = 5, progress: bool = True) -> dict:
    """All figures for one noise level: estimator error, PSNR/SSIM, P@1/P@10, hallucination rate, latency."""
    from lookalike.retrieval.denoise import classical_denoise, denoise_image, estimate_sigma
    from lookalike.retrieval.metrics import retrieval_metrics
    from lookalike.retrieval.denoise.sigma import wavelet_sigma

    g = torch.Generator().manual_seed(s.seed + int(round(sigma * 1000)))
    y = add_noise(s.x, sigma, g)  # clipped to [-1, 1] and 8-bit quantised, like a real noisy file
    noisy_pils = _pils(y)
    est = np.array([estimate_sigma(p) for p in noisy_pils])
    wav = np.array([wavelet_sigma(a.numpy().transpose(1, 2, 0)) for a in y])
    row: dict = {"sigma": sigma, "n_queries": int(len(y)), "embedder": s.embedder_name,
                 "sigma_est_median": float(np.median(est)),
                 "sigma_est_rel_err": float(np.mean(np.abs(est - sigma) / sigma)),
                 "sigma_wavelet_rel_err": float(np.mean(np.abs(wav - sigma) / sigma))}
    est_t = torch.from_numpy(est)
    outs: dict[str, torch.Tensor] = {"noisy": y}
    for m in methods:
        if m == "noisy":
            continue
        if m == "classical":
            arr = y.permute(0, 2, 3, 1).numpy()
            den = [classical_denoise(a[..., 0] if a.shape[-1] == 1 else a, e) for a, e in zip(arr, est)]
            outs[m] = torch.from_numpy(np.stack(den)).float().reshape(y.shape[0], y.shape[2], y.shape[3], -1).permute(0, 3, 1, 2)
        else:
            chunks = []
            for i in tqdm(range(0, len(y), 64), desc=f"{m} sigma={sigma}", disable=not progress, leave=False):
                chunks.append(s.model.denoise(y[i : i + 64], est_t[i : i + 64], m, steps,
                                              generator=torch.Generator().manual_seed(i)))
            outs[m] = torch.cat(chunks)
    for m, out in outs.items():
        e = s.embed(out)
        rm = retrieval_metrics(e, s.labels, s.g_emb, s.g_labels)
        cls = knn_class(e, s.g_emb, s.g_labels)
        row[f"psnr_{m}"] = float(psnr(out, s.x).mean())
        row[f"ssim_{m}"] = _ssim(out, s.x)
        row[f"p_at_1_{m}"] = rm.p_at_1
        row[f"p_at_10_{m}"] = rm.p_at_10
        row[f"halluc_{m}"] = float(np.mean(cls != s.labels))
    # latency of the public API, one query at a time (includes sigma estimation)
    for m in methods:
        if m == "noisy":
            continue
        ts = []
        for p in noisy_pils[:latency_queries]:
            t0 = time.perf_counter()
            denoise_image(p, method=m, steps=steps)
            ts.append((time.perf_counter() - t0) * 1000)
        row[f"ms_{m}"] = float(np.median(ts))
    row["_outputs"] = outs
    return row


def clean_metrics(s: Setup) -> dict:
    """The ceiling: clean test queries."""
    from lookalike.retrieval.metrics import retrieval_metrics

    e = s.embed(s.x)
    rm = retrieval_metrics(e, s.labels, s.g_emb, s.g_labels)
    return {"p_at_1_clean": rm.p_at_1, "p_at_10_clean": rm.p_at_10,
            "halluc_clean": float(np.mean(knn_class(e, s.g_emb, s.g_labels) != s.labels))}


def run_single(args) -> int:
    """``lookalike bench denoise``: one dataset, one sigma, one denoising method."""
    from lookalike.argtypes import fail
    from lookalike.data.samples import DataError
    from lookalike.retrieval.denoise import DenoiseError
    from lookalike.retrieval.embedders import EmbedderError

    if not (0 < args.sigma <= 3):
        return fail(f"--sigma {args.sigma}: must be in (0, 3]")
    if args.queries < 1:
        return fail(f"--queries {args.queries}: must be >= 1")
    if "mnist" not in args.dataset.lower() and "cifar" not in args.dataset.lower():
        return fail(f"--dataset {args.dataset}: choose mnist-sample or cifar10-sample")
    try:
        s = Setup(args.dataset, args.embedder or default_embedder(args.dataset), args.queries, args.seed)
        row = evaluate_sigma(s, args.sigma, ("noisy", args.method), args.steps, progress=not args.json)
        row.update(clean_metrics(s))
    except (DataError, DenoiseError, EmbedderError) as exc:
        return fail(str(exc))
    m = args.method
    out = {"sigma": args.sigma, "p_at_1_clean": row["p_at_1_clean"], "p_at_1_noisy": row["p_at_1_noisy"],
           "p_at_1_denoised": row[f"p_at_1_{m}"], "psnr_noisy": round(row["psnr_noisy"], 2),
           "psnr_denoised": round(row[f"psnr_{m}"], 2), "ms_per_query": round(row[f"ms_{m}"], 1)}
    if args.json:
        print(json.dumps(out))
    else:
        out.update({"dataset": args.dataset, "method": m, "embedder": s.embedder_name, "queries": row["n_queries"]})
        for k, v in out.items():
            print(f"{k:>16}: {v:.4f}" if isinstance(v, float) else f"{k:>16}: {v}")
    return 0
