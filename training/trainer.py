"""Training loops: Siamese CNN (contrastive pairs or mined triplets) and a projection head on cached features."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from lookalike.data.samples import DataError
from lookalike.indexer.pipeline import progress_bar
from lookalike.retrieval.metrics import RetrievalMetrics, retrieval_metrics
from lookalike.retrieval.nets import HeadEmbedder, SiameseNet, default_preprocess

from .augment import seed_everything, siamese_augment
from .datasets import ImageSet, PairBatchSampler, PKBatchSampler
from .feature_cache import clean_features, view_features
from .losses import ContrastiveLoss, SupConLoss, TripletMarginLoss
from .miners import HalvesPairMiner, get_miner

__all__ = ["SiameseConfig", "HeadConfig", "TrainResult", "train_siamese", "train_head", "fit_head_on_views",
           "embed_tensors"]


@dataclass
class SiameseConfig:
    """Hyper-parameters of a Siamese run (stored in the checkpoint metadata)."""

    loss: str = "contrastive"            # a SIAMESE_RECIPES name: contrastive | triplet
    mining: str = "batch-hard"           # batch-hard | semi-hard (triplet only)
    margin: float | None = None          # default 1.0 contrastive, 0.2 triplet (unit-norm embeddings)
    epochs: int = 10
    dim: int = 64
    hidden: int = 256
    input_size: int | None = None        # default: 28 for grayscale digits, 32 otherwise
    grayscale: bool | None = None        # default: auto from the data
    batch_size: int = 128                # pairs per batch (contrastive)
    p: int = 10                          # classes per batch (triplet)
    k: int = 16                          # images per class (triplet)
    lr: float = 1e-3
    augment: bool = True
    seed: int = 0

    def resolved_margin(self) -> float:
        return float(self.margin if self.margin is not None else (1.0 if self.loss == "contrastive" else 0.2))


@dataclass
class HeadConfig:
    """Hyper-parameters of an NT-Xent / SupCon projection-head run."""

    backbones: list[str] = field(default_factory=lambda: ["efficientnet_lite0"])
    input_size: int | None = None        # backbone input size (None: the backbone's default)
    views: int = 8                       # augmented views cached per training image
    temperature: float = 0.05
    supervised: bool = False
    epochs: int = 100
    batch_size: int = 256
    hidden: int = 512
    out_dim: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    output: str = "auto"                 # auto | hidden | projection
    augment: str = "simclr"              # simclr | edits (photo edits + noise + JPEG, for copy detection)
    seed: int = 0


@dataclass
class TrainResult:
    """What a run produced: per-epoch loss, test metrics before/after, wall time."""

    history: list[float]
    metrics: RetrievalMetrics
    metrics_untrained: RetrievalMetrics | None
    wall_s: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"history": [round(float(x), 6) for x in self.history], "metrics": self.metrics.to_dict(),
                "metrics_untrained": self.metrics_untrained.to_dict() if self.metrics_untrained else None,
                "wall_s": round(self.wall_s, 1), **self.extra}


def _to_tensors(model: SiameseNet, data: ImageSet) -> torch.Tensor:
    tf = model.transform
    return torch.stack([tf(im) for im in data.images])


@torch.inference_mode()
def embed_tensors(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Embed preprocessed tensors in eval mode; returns float32 unit vectors."""
    was = model.training
    model.eval()
    out = [model(x[s : s + batch_size]).numpy() for s in range(0, len(x), batch_size)]
    model.train(was)
    return np.concatenate(out).astype(np.float32)


def _need_labels(data: ImageSet, what: str) -> np.ndarray:
    if data.labels is None:
        raise DataError(f"{data.name}: {what} needs labelled images (one sub-folder per class)")
    return data.labels


def _contrastive(cfg: SiameseConfig, labels: np.ndarray, margin: float):
    return ContrastiveLoss(margin), HalvesPairMiner(), PairBatchSampler(labels, cfg.batch_size, seed=cfg.seed)


def _triplet(cfg: SiameseConfig, labels: np.ndarray, margin: float):
    return (TripletMarginLoss(margin), get_miner(cfg.mining, margin=margin),
            PKBatchSampler(labels, cfg.p, cfg.k, seed=cfg.seed))


# loss name -> (loss, miner, batch sampler) for a Siamese run: random pairs for the contrastive loss, P x K
# batches and a triplet miner for the triplet loss
SIAMESE_RECIPES = {"contrastive": _contrastive, "triplet": _triplet}


def _loss_step(loss_fn: torch.nn.Module, miner: Callable | None, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of a batch: the miner (if any) picks the indices tuple the loss scores."""
    return loss_fn(z, labels, miner(z, labels) if miner is not None else None)


def _optimise(opt: torch.optim.Optimizer, sched, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sched.step()


def train_siamese(cfg: SiameseConfig, train: ImageSet, test: ImageSet | None = None,
                  progress: bool = True) -> tuple[SiameseNet, TrainResult]:
    """Train the Siamese CNN from scratch with a contrastive or triplet loss; metrics: test vs train gallery."""
    if cfg.loss not in SIAMESE_RECIPES:
        raise ValueError(f"unknown loss '{cfg.loss}' (choose {' or '.join(SIAMESE_RECIPES)})")
    labels = _need_labels(train, f"the {cfg.loss} loss")
    seed_everything(cfg.seed)
    gray = cfg.grayscale
    if gray is None:
        arr = np.asarray(train.images[0])
        gray = bool(np.all(arr[..., 0] == arr[..., 1]) and np.all(arr[..., 1] == arr[..., 2]))
    size = cfg.input_size or (28 if gray else 32)
    model = SiameseNet(dim=cfg.dim, hidden=cfg.hidden, preprocess=default_preprocess(gray, size),
                       name=f"siamese-{cfg.loss}")
    t0 = time.perf_counter()
    x_train = _to_tensors(model, train)
    x_test = _to_tensors(model, test) if test is not None else None
    y_train = torch.as_tensor(labels)

    def evaluate() -> RetrievalMetrics | None:
        if x_test is None or test.labels is None:
            return retrieval_metrics(embed_tensors(model, x_train), labels)
        return retrieval_metrics(embed_tensors(model, x_test), test.labels, embed_tensors(model, x_train), labels)

    before = evaluate()
    margin = cfg.resolved_margin()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    loss_fn, miner, sampler = SIAMESE_RECIPES[cfg.loss](cfg, labels, margin)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * len(sampler),
                                                pct_start=0.15)
    history: list[float] = []
    bar = tqdm(range(cfg.epochs), desc=f"siamese {cfg.loss}", unit="epoch", disable=not progress)
    model.train()
    for _epoch in bar:
        total, count = 0.0, 0
        for b in sampler:
            xb = x_train[b]
            if cfg.augment:
                xb = siamese_augment(xb, gray, gen)
            z = model(xb)
            loss = _loss_step(loss_fn, miner, z, y_train[b])
            _optimise(opt, sched, loss)
            total += float(loss.detach()) * len(xb)
            count += len(xb)
        history.append(total / max(count, 1))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    after = evaluate()
    wall = time.perf_counter() - t0
    return model, TrainResult(history, after, before, wall, {"config": asdict(cfg), "margin": margin})


def koleo_loss(z: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """KoLeo entropy regulariser (Sablayrolles et al. 2019, used by SSCD): minus the mean log distance of each
    unit-normalised row to its nearest other row; it spreads a batch over the sphere."""
    z = torch.nn.functional.normalize(z.float(), dim=1)
    d = torch.cdist(z, z)
    d = d + torch.eye(len(z), dtype=d.dtype, device=d.device) * 4.0  # never its own neighbour (max distance is 2)
    return -torch.log(d.min(dim=1).values + eps).mean()


def fit_head_on_views(head: torch.nn.Module, views: torch.Tensor, targets: torch.Tensor, temperature: float,
                      epochs: int, batch_size: int, lr: float, weight_decay: float, seed: int,
                      clean: torch.Tensor | None = None, clean_p: float = 0.0, desc: str | None = None,
                      koleo: float = 0.0, progress: bool | Callable[[str, int, int | None], None] | None = None
                      ) -> list[float]:
    """Fit ``head`` (left in eval mode) with SupCon / NT-Xent on cached features ``views`` (N, V, D): each step
    takes two distinct views of a batch of images; with ``clean`` (N, D), the first is the clean image with
    probability ``clean_p``; ``koleo`` > 0 adds that weight of the KoLeo entropy regulariser (SSCD) on each
    view's batch. Progress: a tqdm bar named ``desc`` (none when ``desc`` is None), or with ``progress`` given,
    the indexer's bar (True/False) or callback. Returns the mean loss per epoch."""
    loss_fn = SupConLoss(temperature)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    n, nv = views.shape[:2]
    bs = min(batch_size, n)
    steps_per_epoch = max(1, n // bs)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    head.train()
    if progress is None:
        bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=desc is None)
    else:
        bar = progress_bar(range(epochs), desc=desc or "training the head", unit="epoch", progress=progress)
    for _epoch in bar:
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * bs : (s + 1) * bs]
            # two distinct cached views per image
            v1 = torch.randint(0, nv, (len(idx),), generator=gen)
            v2 = (v1 + torch.randint(1, nv, (len(idx),), generator=gen)) % nv
            first = views[idx, v1]
            if clean is not None and clean_p > 0:
                first = torch.where((torch.rand(len(idx), generator=gen) < clean_p)[:, None], clean[idx], first)
            z1, z2 = head(first), head(views[idx, v2])  # two passes: BatchNorm sees one view each
            loss = _loss_step(loss_fn, None, torch.cat([z1, z2]), torch.cat([targets[idx], targets[idx]]))
            if koleo > 0:
                loss = loss + koleo * 0.5 * (koleo_loss(z1) + koleo_loss(z2))
            _optimise(opt, sched, loss)
            total += float(loss.detach())
        history.append(total / steps_per_epoch)
        if hasattr(bar, "set_postfix"):  # a callback bar has none
            bar.set_postfix(loss=f"{history[-1]:.4f}")
    head.eval()
    return history


def train_head(cfg: HeadConfig, train: ImageSet, test: ImageSet | None = None,
               progress: bool = True) -> tuple[HeadEmbedder, TrainResult]:
    """Train an MLP head with NT-Xent (or SupCon) on cached frozen-backbone features of augmented views."""
    if cfg.supervised:
        _need_labels(train, "--supervised (SupCon)")
    if cfg.views < 2:
        raise ValueError("views must be at least 2")
    if cfg.output not in ("auto", "hidden", "projection"):
        raise ValueError(f"unknown output '{cfg.output}' (choose auto, hidden or projection)")
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    views = torch.from_numpy(view_features(cfg.backbones, cfg.input_size, train, cfg.views, cfg.seed,
                                           progress=progress, augment=cfg.augment))
    tr_clean = clean_features(cfg.backbones, cfg.input_size, train, progress=progress)
    te_clean = clean_features(cfg.backbones, cfg.input_size, test, progress=progress) if test is not None else None
    t_cache = time.perf_counter() - t0
    seed_everything(cfg.seed)  # building a cold cache draws random augmentations: same head init either way
    emb = HeadEmbedder(cfg.backbones, cfg.input_size, cfg.hidden, cfg.out_dim, output="projection",
                       name="supcon-head" if cfg.supervised else "ntxent-head")
    head = emb.head
    labels_t = torch.as_tensor(train.labels) if train.labels is not None else None

    def metrics_for(output: str, gallery_only: bool = False) -> RetrievalMetrics | None:
        head.eval()
        with torch.inference_mode():
            f = (lambda a: head.hidden(torch.from_numpy(a))) if output == "hidden" else (lambda a: head(torch.from_numpy(a)))
            g = f(tr_clean).numpy()
            q = f(te_clean).numpy() if te_clean is not None else None
        head.train()
        if train.labels is None:
            return None
        if gallery_only or q is None or test.labels is None:
            return retrieval_metrics(g, train.labels)  # leave-one-out on the training images
        return retrieval_metrics(q, test.labels, g, train.labels)

    before = (retrieval_metrics(te_clean, test.labels, tr_clean, train.labels)
              if te_clean is not None and test.labels is not None and train.labels is not None else None)
    # SupCon's positives are same-class images; NT-Xent's are the two views of one image (labels = image ids)
    targets = labels_t if cfg.supervised else torch.arange(len(train))
    history = fit_head_on_views(head, views, targets, cfg.temperature, cfg.epochs, cfg.batch_size, cfg.lr,
                                cfg.weight_decay, cfg.seed,
                                desc=("supcon head" if cfg.supervised else "nt-xent head") if progress else None)
    choice = cfg.output
    selection = {}
    if choice == "auto":
        # pick the retrieval vector on the training images (leave-one-out), never on the test split
        sel = {o: metrics_for(o, gallery_only=True) for o in ("hidden", "projection")}
        if all(m is not None for m in sel.values()):
            selection = {o: m.map_at_r for o, m in sel.items()}
            choice = max(selection, key=selection.get)
        else:
            choice = "projection"
    emb.output = choice
    emb.dim = cfg.hidden if choice == "hidden" else cfg.out_dim
    after = metrics_for(choice)
    wall = time.perf_counter() - t0
    extra = {"config": {**cfg.__dict__}, "output": choice, "selection_train_map_at_r": selection,
             "cache_s": round(t_cache, 1)}
    if te_clean is not None and train.labels is not None and test.labels is not None:
        other = "projection" if choice == "hidden" else "hidden"
        extra["metrics_other_output"] = {other: metrics_for(other).to_dict()}
    if after is None:
        after = RetrievalMetrics(0.0, 0.0, 0.0, 0.0, 0, len(train))
    return emb, TrainResult(history, after, before, wall, extra)
