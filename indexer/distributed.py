"""Embedding distributed with Ray Data: ``lookalike index DIR --executor ray [--address ADDR]``.

Only step 5 of the pipeline (decode + embed new content) moves to Ray: a Ray Dataset of file paths goes through
``map_batches`` with an actor pool of embedders (each actor loads the model once); the driver receives
(vectors, metadata, failures) batches and commits them through the same chunked, crash-safe writer as the
single-process path (``indexer.pipeline.index_paths``), so a killed run resumes the same way.

Without ``address`` a local Ray instance is started (and stopped) by the command; with one, the batches run on
that cluster, whose nodes must see the same file paths (a shared file system) and have lookalike installed.
Install with ``pip install 'lookalike[distributed]'``.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import numpy as np

__all__ = ["RayUnavailable", "ray_embed_files"]


class RayUnavailable(RuntimeError):
    """Ray is not installed, the cluster cannot be reached, or the run on it failed; the message is one line."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:200]


class _EmbedActor:
    """One embedder per Ray actor: decodes, preprocesses and embeds a batch of paths."""

    def __init__(self, factory: Callable[[str], Any], model: str, max_pixels: int) -> None:
        import torch

        torch.set_num_threads(1)
        self.embedder = factory(model)
        self.max_pixels = max_pixels

    def __call__(self, batch: dict) -> dict:
        import torch

        from lookalike.indexer.loading import ImageLoadError, load_image_hashed
        from lookalike.indexer.signature import SIGNATURE_DIM, lowfreq_signature

        n = len(batch["i"])
        dim = self.embedder.dim
        tensors, ok_rows = [], []
        w = np.zeros(n, np.int64)
        h = np.zeros(n, np.int64)
        err = [""] * n
        sig = np.zeros((n, SIGNATURE_DIM), np.float32)
        sha = [""] * n
        for r, path in enumerate(batch["path"]):
            path = str(path)
            try:
                im, sha[r] = load_image_hashed(path, max_pixels=self.max_pixels,
                                               draft_size=self.embedder.preprocess.input_size)
                w[r], h[r] = im.info.get("original_size", im.size)
                sig[r] = lowfreq_signature(im)
                tensors.append(self.embedder.transform_uint8(im))  # normalised per batch, as the local path does
                ok_rows.append(r)
            except ImageLoadError as exc:
                err[r] = exc.reason
            except Exception as exc:  # a pathological image must not stop the run
                err[r] = f"cannot process image ({type(exc).__name__}: {exc})"
        vec = np.zeros((n, dim), np.float32)
        if tensors:
            vec[ok_rows] = self.embedder.embed_tensor(torch.stack(tensors))
        return {"i": np.asarray(batch["i"], np.int64), "vec": vec, "w": w, "h": h, "sig": sig,
                "err": np.asarray(err, dtype=object), "sha": np.asarray(sha, dtype=object)}


def _init_ray(address: str | None, workers: int):
    try:
        import ray
    except ImportError:
        raise RayUnavailable("--executor ray needs Ray: pip install 'lookalike[distributed]'") from None
    started = False
    if not ray.is_initialized():
        kw = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            if address:
                ray.init(address=address, **kw)
            else:
                ray.init(address="local", num_cpus=max(1, workers) + 1, **kw)  # a new instance, even if one runs
        except Exception as exc:
            raise RayUnavailable(f"cannot start or reach Ray{' at ' + address if address else ''} ({_one_line(exc)})") from None
        started = True
    return ray, started


def ray_embed_files(factory: Callable[[str], Any], model: str, dim: int, paths: Sequence[str], batch_size: int = 64, workers: int = 2,
                    max_pixels: int = 0, address: str | None = None, progress: bool = True,
                    ) -> Iterator[tuple[np.ndarray, list[tuple], list[tuple[int, str]]]]:
    """Yield (vectors, [(i, w, h, signature, sha256 of the bytes decoded)], [(i, reason)]) batches like
    ``pipeline.embed_files``, computed by Ray actors, each building its embedder as ``factory(model)``."""
    ray, started = _init_ray(address, workers)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = bool(progress)
        ctx.execution_options.verbose_progress = False
        items = [{"i": i, "path": p} for i, p in enumerate(paths)]
        n_blocks = max(1, min(len(items), max(workers * 4, len(items) // max(1, batch_size))))
        ds = ray.data.from_items(items, override_num_blocks=n_blocks)
        ds = ds.map_batches(_EmbedActor, fn_constructor_args=(factory, model, max_pixels), batch_size=batch_size,
                            compute=ray.data.ActorPoolStrategy(size=max(1, workers)), num_cpus=1, batch_format="numpy")
        try:
            for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
                ok = [r for r in range(len(b["i"])) if not b["err"][r]]
                vecs = np.ascontiguousarray(b["vec"][ok], dtype=np.float32).reshape(-1, dim)
                meta = [(int(b["i"][r]), int(b["w"][r]), int(b["h"][r]), np.asarray(b["sig"][r], np.float32),
                         str(b["sha"][r]) or None) for r in ok]
                failed = [(int(b["i"][r]), str(b["err"][r])) for r in range(len(b["i"])) if b["err"][r]]
                yield vecs, meta, failed
        except ray.exceptions.RayError as exc:  # a lost actor, node or object: the committed chunks stay
            first = next((line for line in str(exc).splitlines() if line.strip()), "")
            raise RayUnavailable(f"the Ray run failed ({type(exc).__name__}: {_one_line(first)}); what was committed "
                                 "is kept, run the command again to resume") from None
    finally:
        if started:
            ray.shutdown()
