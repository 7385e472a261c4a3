"""The one checkpoint format: every kind round-trips, writes are atomic, bad files give one-line errors."""
from __future__ import annotations

import json
import os

import pytest
import torch

from lookalike.retrieval.checkpoint import (
    FORMAT,
    VERSION,
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    restore,
    save_checkpoint,
)
from lookalike.retrieval.denoise.diffusion import build_diffusion, load_diffusion, save_diffusion
from lookalike.retrieval.denoise.sigma import SigmaNet, load_sigma_net, save_sigma_net
from lookalike.retrieval.embedders import EmbedderError
from lookalike.retrieval.nets import MNIST_PREPROCESS, HeadEmbedder, SiameseNet, load_checkpoint_embedder, save_embedder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _error(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def _saved(kind: str, path):
    """(saved model, reloaded model, a function of a model to compare) for each kind."""
    torch.manual_seed(0)
    if kind == "siamese":
        model = SiameseNet(dim=8, preprocess=MNIST_PREPROCESS, hidden=16, channels=(4, 8)).eval()
        save_embedder(path, model, {"command": "test"})
        return model, load_checkpoint_embedder(path), lambda m: m(torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1)))
    if kind == "projection-head":
        model = HeadEmbedder(["efficientnet_lite0"], hidden=16, out_dim=4, in_dim=12, load_backbones=False).eval()
        save_checkpoint(path, Checkpoint(kind, model.config(), {"command": "test"}, model.head_state_dict()))
        back = restore(read_checkpoint(path), path, lambda c: HeadEmbedder.from_config(c, load_backbones=False),
                       part=lambda m: m.head).eval()
        return model, back, lambda m: m.forward_head(torch.randn(3, 12, generator=torch.Generator().manual_seed(1)))
    if kind == "ddpm":
        model = build_diffusion(1, 28, base=8)
        for p in model.unet.conv_out.parameters():  # zero-initialised output would hide a weight mix-up
            torch.nn.init.normal_(p, std=0.1)
        save_diffusion(model, path, {"command": "test"})
        y = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2 - 1
        return model, load_diffusion(path), lambda m: m.denoise(y, 0.3, "ddim", 3)
    model = SigmaNet(width=4, depth=2).eval()
    save_sigma_net(model, path, {"command": "test"})
    return model, load_sigma_net(path), lambda m: m.estimate(torch.rand(2, 3, 20, 20, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("kind", ["siamese", "projection-head", "ddpm", "sigma-estimator"])
def test_every_kind_round_trips(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    model, back, run = _saved(kind, path)
    assert torch.equal(run(model), run(back))
    ckpt = read_checkpoint(path)
    assert ckpt.kind == kind and ckpt.metadata["command"] == "test"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == VERSION and raw["kind"] == kind
    assert json.loads(raw["config"]) == ckpt.config
    if kind == "ddpm":
        assert (ckpt.config["image_size"], ckpt.config["channels"]) == (28, 1)


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    model = SigmaNet(width=4, depth=2)
    save_sigma_net(model, path, {"run": 1})
    before = path.read_bytes()
    real_save = torch.save

    def dies_half_way(obj, f):
        real_save(obj, f)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_sigma_net(SigmaNet(width=4, depth=2), path, {"run": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temp file left behind
    monkeypatch.undo()
    assert read_checkpoint(path).metadata == {"run": 1}


def test_foreign_damaged_and_missing_files(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(3)}, foreign)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(foreign)
    assert _error(e) == f"{foreign}: not a lookalike checkpoint (foreign torch file)"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(junk)
    assert _error(e).startswith(f"{junk}: not a readable weights-only torch checkpoint (")
    good = tmp_path / "good.pt"
    save_sigma_net(SigmaNet(width=4, depth=2), good, {})
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(cut)
    msg = _error(e)
    assert msg.startswith(f"{cut}: not a readable weights-only torch checkpoint (") and msg.endswith(")")
    obj = torch.load(good, weights_only=True)
    obj["metadata"] = "{not json"
    torch.save(obj, tmp_path / "bad-meta.pt")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(tmp_path / "bad-meta.pt")
    assert "damaged lookalike checkpoint" in _error(e)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "missing.pt")


def test_newer_version_and_wrong_kind(tmp_path):
    path = tmp_path / "m.pt"
    save_diffusion(build_diffusion(1, 28, base=8), path)
    with pytest.raises(CheckpointError) as e:
        load_sigma_net(path)
    assert _error(e) == f"{path}: a 'ddpm' checkpoint, not 'sigma-estimator'"
    with pytest.raises(EmbedderError, match="a 'ddpm' checkpoint, not 'siamese' or 'projection-head'"):
        load_checkpoint_embedder(path)
    obj = torch.load(path, weights_only=True)
    obj["version"] = VERSION + 1
    torch.save(obj, path)
    with pytest.raises(CheckpointError) as e:
        load_diffusion(path)
    assert _error(e) == (f"{path}: checkpoint version {VERSION + 1} is newer than this lookalike understands "
                         f"({VERSION})")


def test_weights_only_refuses_a_pickle_with_code(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": VERSION, "state_dict": {}, "x": Payload()}, evil)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(evil)
    msg = _error(e)
    assert not marker.exists()
    assert msg.startswith(f"{evil}: not a readable weights-only torch checkpoint (") and "posix.system" in msg


def test_weights_that_do_not_fit(tmp_path):
    path = tmp_path / "m.pt"
    save_embedder(path, SiameseNet(dim=8, preprocess=MNIST_PREPROCESS, hidden=16, channels=(4, 8)), {})
    obj = torch.load(path, weights_only=True)
    cfg = json.loads(obj["config"])
    cfg["dim"] = 9
    obj["config"] = json.dumps(cfg)
    torch.save(obj, path)
    with pytest.raises(EmbedderError) as e:
        load_checkpoint_embedder(path)
    assert _error(e).startswith(f"{path}: weights do not fit the 'siamese' architecture (Error(s) in loading state_dict "
                                f"for SiameseNet: size mismatch for fc.3.weight")
    d = tmp_path / "d.pt"
    save_diffusion(build_diffusion(1, 28, base=8), d)
    obj = torch.load(d, weights_only=True)
    cfg = json.loads(obj["config"])
    cfg["schedule"]["kind"] = "zigzag"
    obj["config"] = json.dumps(cfg)
    torch.save(obj, d)
    with pytest.raises(CheckpointError) as e:
        load_diffusion(d)
    assert _error(e) == f"{d}: cannot rebuild the 'ddpm' network (unknown beta schedule 'zigzag' (choose linear or cosine))"
    del cfg["unet"]
    obj["config"] = json.dumps(cfg)
    torch.save(obj, d)
    with pytest.raises(CheckpointError, match="cannot rebuild the 'ddpm' network \\(config has no 'unet'\\)"):
        load_diffusion(d)


def test_earlier_formats_are_read(tmp_path):
    """Files written before the one format (version 1) still load, with the same kind, config and metadata."""
    net = SigmaNet(width=4, depth=2)
    sd = net.state_dict()
    torch.save({"format": "lookalike-sigma-estimator", "meta_json": json.dumps({"config": net.config, "steps": 5}),
                "state_dict": sd}, tmp_path / "sigma.pt")
    ckpt = read_checkpoint(tmp_path / "sigma.pt")
    assert (ckpt.kind, ckpt.config, ckpt.metadata) == ("sigma-estimator", {"width": 4, "depth": 2}, {"steps": 5})
    diffusion = build_diffusion(3, 32, base=8)
    torch.save({"format": "lookalike-ddpm", "state_dict": diffusion.unet.state_dict(), "meta_json": json.dumps(
        {"format": "lookalike-ddpm", "version": 1, **diffusion.config(), "dataset": "cifar10"})}, tmp_path / "d.pt")
    back = load_diffusion(tmp_path / "d.pt")
    assert (back.image_size, back.channels, back.meta) == (32, 3, {"dataset": "cifar10"})
    model = SiameseNet(dim=8, preprocess=MNIST_PREPROCESS, hidden=16, channels=(4, 8))
    meta = {"format": "lookalike-embedder", "version": 1, "architecture": {"kind": "siamese", "config": model.config()},
            "wall_s": 3}
    torch.save({"format": "lookalike-embedder", "version": 1, "state_dict": model.state_dict(),
                "metadata": json.dumps(meta)}, tmp_path / "s.pt")
    assert read_checkpoint(tmp_path / "s.pt").metadata == {"wall_s": 3}
    assert isinstance(load_checkpoint_embedder(tmp_path / "s.pt"), SiameseNet)
