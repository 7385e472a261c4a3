"""``lookalike adapt``: fine-tune an index's projection head (e.g. ``ntxent-copies``) on the index's own images.

Self-supervised, as the head was trained (``training/copy_head.py``): NT-Xent on frozen-backbone features of
photo-edited views (``lookalike.data.edits.random_edit``), here of a sample of the indexed images (at most
``AdaptConfig.images`` x ``views``), with each image's clean feature as one more view. Then every indexed image is
re-embedded from its cached clean backbone feature (one backbone pass per image, none after training) and the index
switches to the new head in one transaction (``retrieval/adapted.py`` says why a kill at any moment is safe).

Features are cached in ``<index>/adapt/<backbone key>/`` in chunks written atomically, keyed by image id and sha256,
so a killed run resumes where it stopped and a later adapt (after new images were indexed) computes only the new
ones. Files are read from their indexed paths; a file replaced in place since indexing is read as it is now.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lookalike.fsutil import atomic_path
from lookalike.indexer.loading import ImageLoadError, load_image
from lookalike.indexer.pipeline import embed_files, progress_bar
from lookalike.retrieval.adapted import (ADAPT_DIR, HEAD_PREFIX, AdaptError, adapted_info, replace_vectors,
                                         switch_config)
from lookalike.retrieval.nets import HeadEmbedder, save_embedder

from .trainer import fit_head_on_views

__all__ = ["AdaptConfig", "AdaptReport", "adapt_index", "AdaptFeatureChunks"]


@dataclass
class AdaptConfig:
    """Settings of ``lookalike adapt`` (recorded in the adapted checkpoint)."""

    images: int = 1000          # most indexed images whose edited views train the head (a seeded sample)
    views: int = 4              # edited views per sampled image (the image's clean feature is one more)
    epochs: int = 30
    lr: float = 1e-4            # fine-tuning the shipped head: a tenth of its training rate
    temperature: float = 0.1
    batch_size: int = 256
    weight_decay: float = 1e-4
    chunk: int = 64             # images per saved chunk of cached features (what a kill can lose)
    seed: int = 0
    workers: int = 0            # decoding processes for the clean pass (0: in this process)


@dataclass
class AdaptReport:
    """What an adapt run did."""

    index: str
    base: str
    head: str
    images: int
    sampled: int
    views: int
    clean_reused: int
    clean_computed: int
    views_reused: int
    views_computed: int
    cache_s: float
    train_s: float
    wall_s: float
    loss: list[float] = field(default_factory=list)
    mean_cosine_to_before: float = 0.0
    factory: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"adapted {self.index}: head {self.head} (from {self.base}), {self.images} images re-embedded; trained "
                f"on {self.sampled} x {self.views} edited views, loss {self.loss[0]:.3f} -> {self.loss[-1]:.3f}; "
                f"features {self.clean_computed + self.views_computed} computed, "
                f"{self.clean_reused + self.views_reused} reused; {self.wall_s:.0f} s")


class _Backbone:
    """The frozen backbone(s) of a head embedder, with the indexer's preprocessing: batches -> clean features."""

    def __init__(self, emb: HeadEmbedder) -> None:
        self.emb = emb
        self.preprocess = emb.preprocess
        self.dim = emb.backbone.dim
        self.transform_uint8 = emb.transform_uint8

    @torch.inference_mode()
    def embed_tensor(self, batch: torch.Tensor) -> np.ndarray:
        batch = torch.as_tensor(batch)
        if batch.dtype == torch.uint8:
            batch = self.preprocess.normalize_batch(batch)
        return self.emb.backbone(batch.contiguous(memory_format=torch.channels_last)).numpy().astype(np.float32)


class AdaptFeatureChunks:
    """Chunks of backbone features in a folder: ``<kind>-<n>.npz`` holding ids, sha256s and features."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob(".*.npz"):  # temp files of a killed write (we hold the writer lock)
            stale.unlink(missing_ok=True)

    def load(self, kind: str, shas: dict[int, str]) -> dict[int, np.ndarray]:
        """id -> feature of every cached image still indexed with the same content."""
        out: dict[int, np.ndarray] = {}
        for f in sorted(self.folder.glob(f"{kind}-*.npz")):
            try:
                with np.load(f, allow_pickle=False) as z:
                    ids, sha, feats = z["ids"], z["sha"], z["feats"]
            except (OSError, ValueError, KeyError):
                continue  # unreadable chunk: its images are computed again
            for i, s, v in zip(ids.tolist(), sha.tolist(), feats):
                if shas.get(int(i)) == s:
                    out[int(i)] = v
        return out

    def save(self, kind: str, ids: list[int], shas: list[str], feats: np.ndarray) -> None:
        """One more chunk, written atomically."""
        n = len(list(self.folder.glob(f"{kind}-*.npz")))
        path = self.folder / f"{kind}-{n:06d}-{ids[0]}.npz"
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, ids=np.asarray(ids, np.int64), sha=np.asarray(shas), feats=feats.astype(np.float32))


def _cache_key(emb: HeadEmbedder) -> str:
    spec = json.dumps([emb.backbone_names, emb.input_size, emb.preprocess.to_dict()], sort_keys=True)
    return "features-" + hashlib.sha1(spec.encode()).hexdigest()[:12]


def _base_head(engine, base: str) -> HeadEmbedder:
    """The head the index was built with (before any adaptation); AdaptError for other models."""
    from lookalike.retrieval.embedders import get_embedder
    from lookalike.retrieval.models import EmbedderError

    reason = "adapt fine-tunes a projection head over a frozen backbone (e.g. ntxent-copies); index with " \
             "--model ntxent-copies in a new --db folder to use it"
    try:
        emb = get_embedder(base, cache=False)
    except EmbedderError as exc:
        raise AdaptError(f"{engine.root}: cannot load the index's model '{base}' ({exc})") from None
    if not isinstance(emb, HeadEmbedder) or emb.backbone is None:
        raise AdaptError(f"{engine.root}: the index's model '{base}' is not a projection head; {reason}")
    if engine.config.precision == "int8":
        raise AdaptError(f"{engine.root}: the index holds int8 vectors; adapt needs an fp32 or bf16 index")
    return emb


def _paths(engine, ids: list[int]) -> dict[int, list[str]]:
    info = engine.store.lookup(ids)
    return {i: info[i].paths for i in ids if i in info}


def _load(paths: list[str], draft: int) -> Image.Image:
    last = None
    for p in paths:
        try:
            return load_image(p, draft_size=draft)
        except ImageLoadError as exc:
            last = exc
    raise last or ImageLoadError("?", "no file")


def _unreadable(bad: list[tuple[str, str]], root) -> AdaptError:
    path, reason = bad[0]
    return AdaptError(f"{path}: {reason}; {len(bad)} indexed image(s) cannot be read: run 'lookalike index' on "
                      f"their folders (it forgets missing files), then 'lookalike adapt --db {root}' again")


def _clean_features(engine, bb: _Backbone, cache: AdaptFeatureChunks, ids: list[int], shas: dict[int, str],
                    cfg: AdaptConfig, progress) -> tuple[dict[int, np.ndarray], int]:
    have = cache.load("clean", shas)
    reused = len(have)
    todo = [i for i in ids if i not in have]
    if not todo:
        return have, reused
    paths = _paths(engine, todo)
    first = [paths[i][0] for i in todo]
    buf_ids: list[int] = []
    buf: list[np.ndarray] = []
    bad: list[tuple[str, str]] = []

    def flush() -> None:
        if buf_ids:
            cache.save("clean", buf_ids, [shas[i] for i in buf_ids], np.stack(buf))
            buf_ids.clear()
            buf.clear()

    for vecs, meta, failed in embed_files(bb, first, batch_size=min(32, cfg.chunk), workers=cfg.workers, progress=progress,
                                          desc="adapt: backbone features"):
        for row, (k, *_) in enumerate(meta):
            have[todo[k]] = vecs[row]
            buf_ids.append(todo[k])
            buf.append(vecs[row])
        for k, reason in failed:  # another path of the same content may still be readable
            try:
                im = _load(paths[todo[k]][1:], bb.preprocess.input_size)
            except ImageLoadError:
                bad.append((first[k], reason))
                continue
            v = bb.embed_tensor(torch.stack([bb.transform_uint8(im)]))[0]
            have[todo[k]] = v
            buf_ids.append(todo[k])
            buf.append(v)
        if len(buf_ids) >= cfg.chunk:
            flush()
    flush()
    if bad:
        raise _unreadable(bad, engine.root)
    return have, reused


def _view_features(engine, bb: _Backbone, cache: AdaptFeatureChunks, sample: list[int], shas: dict[int, str],
                   cfg: AdaptConfig, progress) -> tuple[dict[int, np.ndarray], int]:
    from lookalike.data.edits import random_edit

    kind = f"views{cfg.views}-seed{cfg.seed}"
    have = cache.load(kind, shas)
    reused = sum(1 for i in sample if i in have)
    todo = [i for i in sample if i not in have]
    if not todo:
        return have, reused
    paths = _paths(engine, todo)
    bar = progress_bar(total=len(todo) * cfg.views, desc="adapt: edited views", unit="view", progress=progress)
    draft = 2 * bb.preprocess.input_size  # edits (crops, thumbnails) see more than the model's input
    bad: list[tuple[str, str]] = []
    try:
        for s in range(0, len(todo), cfg.chunk):
            part = todo[s : s + cfg.chunk]
            feats = []
            done = []
            for iid in part:
                try:
                    im = _load(paths[iid], draft)
                except ImageLoadError as exc:
                    bad.append((paths[iid][0], exc.reason))
                    continue
                rng = np.random.default_rng([cfg.seed, iid])  # the same views whenever it is (re)computed
                x = torch.stack([bb.transform_uint8(random_edit(im, rng)) for _ in range(cfg.views)])
                feats.append(bb.embed_tensor(x))
                done.append(iid)
                bar.update(cfg.views)
            if done:
                cache.save(kind, done, [shas[i] for i in done], np.stack(feats))
                have.update(zip(done, feats))
    finally:
        bar.close()
    if bad:
        raise _unreadable(bad, engine.root)
    return have, reused


def _finetune(head: torch.nn.Module, pool: torch.Tensor, cfg: AdaptConfig, progress) -> list[float]:
    """NT-Xent on (M, P, D) features (``training.trainer.fit_head_on_views``): two of the P views of each image
    are a positive pair."""
    torch.manual_seed(cfg.seed)
    return fit_head_on_views(head, pool, torch.arange(pool.shape[0]), cfg.temperature, cfg.epochs,
                             max(2, cfg.batch_size), cfg.lr, cfg.weight_decay, cfg.seed,
                             desc="adapt: training the head", progress=progress)


@torch.inference_mode()
def _embed_features(emb: HeadEmbedder, feats: np.ndarray) -> np.ndarray:
    emb.eval()
    out = [torch.nn.functional.normalize(emb.forward_head(torch.from_numpy(feats[s : s + 1024])).float(), dim=1).numpy()
           for s in range(0, len(feats), 1024)]
    return np.concatenate(out).astype(np.float32)


def adapt_index(db: str | Path, cfg: AdaptConfig = AdaptConfig(), progress=True, command: str = "") -> AdaptReport:
    """Fine-tune the index's projection head on its own images, re-embed every image, switch the index to it.

    Holds the index's writer lock throughout; resumable (cached features are reused); AdaptError (one line) for an
    index whose model is not a projection head over a frozen backbone."""
    from lookalike.retrieval.engine import Engine

    if cfg.views < 1 or cfg.images < 2 or cfg.epochs < 1 or cfg.chunk < 1:
        raise AdaptError("adapt needs --views >= 1, --images >= 2, --epochs >= 1")
    t0 = time.perf_counter()
    engine = Engine.open(db, create=False, load_index=False)
    try:
        with engine.folder.writer_lock():
            for stale in engine.root.glob(f".{HEAD_PREFIX}*.tmp"):  # a head being written when a run was killed
                stale.unlink(missing_ok=True)
            info = adapted_info(engine.config)
            base = info["base"] if info and info.get("base") else engine.config.model
            emb = _base_head(engine, base)
            ids = engine.store.image_ids().tolist()
            if len(ids) < 2:
                raise AdaptError(f"{engine.root}: adapt needs at least 2 indexed images, the index holds {len(ids)}")
            shas = {i: v.sha256 for i, v in engine.store.lookup(ids).items()}
            before = dict(zip(*[np.concatenate(a) for a in zip(*engine.store.iter_vectors())]))  # id -> vector
            cache = AdaptFeatureChunks(engine.root / ADAPT_DIR / _cache_key(emb))
            bb = _Backbone(emb)
            clean, clean_reused = _clean_features(engine, bb, cache, ids, shas, cfg, progress)
            rng = np.random.default_rng(cfg.seed)
            sample = sorted(rng.choice(ids, size=min(cfg.images, len(ids)), replace=False).tolist())
            views, views_reused = _view_features(engine, bb, cache, sample, shas, cfg, progress)
            t_cache = time.perf_counter() - t0

            t1 = time.perf_counter()
            pool = torch.from_numpy(np.stack([np.concatenate([clean[i][None], views[i]]) for i in sample]))
            history = _finetune(emb.head, pool, cfg, progress)
            t_train = time.perf_counter() - t1

            order = np.asarray(ids, np.int64)
            vectors = _embed_features(emb, np.stack([clean[i] for i in ids]))
            old = np.stack([before[i] for i in ids]) if len(before) == len(ids) else None
            digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in emb.head.state_dict().values())).hexdigest()[:12]
            head_file = f"{HEAD_PREFIX}{digest}.pt"
            meta = {"adapted": {"base": base, **asdict(cfg), "indexed": len(ids), "sampled": len(sample),
                                "loss": [round(history[0], 4), round(history[-1], 4)],
                                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, "command": command}
            save_embedder(engine.root / head_file, emb, meta)          # 1. the head, under a new name
            replace_vectors(engine.store, order, vectors, head_file)   # 2. every vector + its head, one transaction
            switch_config(engine.config, engine.folder, meta["adapted"] | {"file": head_file})
            factory = engine.maintainer.rebuild()                      # 3. FAISS from the store, then lookalike.json
            for f in engine.root.glob(f"{HEAD_PREFIX}*.pt"):           # heads no vector refers to any more
                if f.name != head_file:
                    f.unlink(missing_ok=True)
    finally:
        engine.close()
    cos = float(np.mean(np.sum(old * vectors, axis=1))) if old is not None else float("nan")
    return AdaptReport(index=str(engine.root), base=base, head=head_file, images=len(ids), sampled=len(sample),
                       views=cfg.views, clean_reused=clean_reused, clean_computed=len(ids) - clean_reused,
                       views_reused=views_reused, views_computed=len(sample) - views_reused,
                       cache_s=round(t_cache, 1), train_s=round(t_train, 1), wall_s=round(time.perf_counter() - t0, 1),
                       loss=[round(x, 4) for x in history], mean_cosine_to_before=round(cos, 4), factory=factory)

