"""A compact U-Net noise predictor: sinusoidal time embedding, residual blocks, self-attention at the lowest resolution."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "timestep_embedding"]


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps t (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def _gn(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, time embedding added in between, 1x1 skip when channels change."""

    def __init__(self, cin: int, cout: int, tdim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.conv1 = _gn(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(tdim, cout)
        self.norm2, self.conv2 = _gn(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.temb(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Multi-head self-attention over all spatial positions, residual."""

    def __init__(self, ch: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.norm = _gn(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(n, c, h, w))


class UNet(nn.Module):
    """Predicts the noise eps in x_t; input sides are reflect-padded to a multiple of 2**(levels-1) and cropped back.

    Convolutional at every level, so any H, W works; ``attention=False`` drops the lowest-resolution
    self-attention (quadratic in the pixel count), which makes cost linear in the image area (the photo model).
    """

    def __init__(self, in_channels: int = 1, base: int = 32, mults: tuple[int, ...] = (1, 2, 2),
                 num_res: int = 1, dropout: float = 0.0, heads: int = 4, attention: bool = True) -> None:
        super().__init__()
        self.config = {"in_channels": in_channels, "base": base, "mults": list(mults), "num_res": num_res,
                       "dropout": dropout, "heads": heads}
        if not attention:  # only written when off, so the small models' configs stay as they were
            self.config["attention"] = False

        def attn(c: int) -> nn.Module:
            return SelfAttention(c, heads) if attention else nn.Identity()

        self.in_channels = in_channels
        self.levels = len(mults)
        tdim = base * 4
        self.base = base
        self.time_mlp = nn.Sequential(nn.Linear(base, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.conv_in = nn.Conv2d(in_channels, base, 3, padding=1)
        chans = [base * m for m in mults]
        self.down = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = base
        for i, c in enumerate(chans):
            blocks = nn.ModuleList()
            for _ in range(num_res):
                blocks.append(ResBlock(ch, c, tdim, dropout))
                ch = c
            self.down.append(blocks)
            self.down_attn.append(attn(c) if i == self.levels - 1 else nn.Identity())
            self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1) if i < self.levels - 1 else nn.Identity())
        self.mid1 = ResBlock(ch, ch, tdim, dropout)
        self.mid_attn = attn(ch)
        self.mid2 = ResBlock(ch, ch, tdim, dropout)
        self.up = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(self.levels)):
            c = chans[i]
            blocks = nn.ModuleList()
            for j in range(num_res):
                blocks.append(ResBlock(ch + c if j == 0 else ch, c, tdim, dropout))
                ch = c
            self.up.append(blocks)
            self.up_attn.append(attn(c) if i == self.levels - 1 else nn.Identity())
            self.upsample.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, chans[i - 1], 3, padding=1))
                                 if i > 0 else nn.Identity())
            if i > 0:
                ch = chans[i - 1]
        self.norm_out = _gn(ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        m = 2 ** (self.levels - 1)
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")
        temb = self.time_mlp(timestep_embedding(t, self.base))
        h = self.conv_in(x)
        skips = []
        for blocks, attn, down in zip(self.down, self.down_attn, self.downsample):
            for b in blocks:
                h = b(h, temb)
            h = attn(h)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for blocks, attn, up in zip(self.up, self.up_attn, self.upsample):
            h = torch.cat([h, skips.pop()], dim=1)
            for b in blocks:
                h = b(h, temb)
            h = up(attn(h))
        out = self.conv_out(F.silu(self.norm_out(h)))
        if ph or pw:
            out = out[..., ph // 2 : ph // 2 + H, pw // 2 : pw // 2 + W]
        return out
