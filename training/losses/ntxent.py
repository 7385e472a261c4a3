"""NT-Xent (SimCLR, Chen et al. 2020) and supervised contrastive SupCon (Khosla et al. 2020)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def supcon_loss(z: torch.Tensor, labels: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """SupCon "L_out": for each anchor, mean over its positives of ``-log softmax`` over all other samples.

    ``z`` (M, D) holds every view of every image (normalised here); ``labels`` (M,) says which rows are
    positives of each other. With labels = image ids and two views this is exactly NT-Xent.
    """
    z = F.normalize(z.float(), dim=1)
    m = z.shape[0]
    logits = z @ z.T / temperature
    eye = torch.eye(m, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~eye
    n_pos = pos.sum(1)
    keep = n_pos > 0
    if not keep.any():
        return z.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(1)[keep] / n_pos[keep]
    return per_anchor.mean()


class NTXentLoss(torch.nn.Module):
    """NT-Xent over two views: row i of ``z1`` and row i of ``z2`` are the positive pair, the 2N-2 others negatives."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        n = z1.shape[0]
        ids = torch.arange(n, device=z1.device)
        return supcon_loss(torch.cat([z1, z2]), torch.cat([ids, ids]), self.temperature)


class SupConLoss(torch.nn.Module):
    """Supervised contrastive loss over two views: every same-class sample in the batch is a positive."""

    def __init__(self, temperature: float = 0.05) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return supcon_loss(torch.cat([z1, z2]), torch.cat([labels, labels]), self.temperature)
