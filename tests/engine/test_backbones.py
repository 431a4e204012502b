"""Backbone weights: packaged Lite0 loads strictly and deterministically; missing weights are clear errors."""

from __future__ import annotations

import pytest
import torch

from engine.errors import UserError
from engine.models import backbones
from engine.models.backbones import convert_lite_state_dict, create_backbone, lite_package_weights
from engine.models.dfr import StageFeatures


def _pattern() -> torch.Tensor:
    """Two simple synthetic images in [0, 1]: stripes and a checkerboard."""
    y, x = torch.meshgrid(torch.arange(224), torch.arange(224), indexing="ij")
    stripes = ((x // 8) % 2).float().expand(3, -1, -1)
    checker = (((x // 16) + (y // 16)) % 2).float().expand(3, -1, -1)
    return torch.stack([stripes, checker])  # (2, 3, 224, 224)


def test_lite0_package_weights_found_and_converted() -> None:
    path = lite_package_weights("tf_efficientnet_lite0")
    assert path is not None and path.suffix == ".pth"
    sd = torch.load(path, map_location="cpu", weights_only=True)
    model = create_backbone("tf_efficientnet_lite0", "random")
    converted = convert_lite_state_dict(sd, model)
    assert set(converted) == set(model.state_dict())  # every key maps, none left over
    assert converted["blocks.1.0.conv_pwl.weight"].shape == (24, 96, 1, 1)


def test_lite0_pretrained_loads_strictly_and_consistently() -> None:
    a = create_backbone("tf_efficientnet_lite0", "pretrained")
    b = create_backbone("tf_efficientnet_lite0", "pretrained")
    assert a.norm_mean == (0.5, 0.5, 0.5) and a.norm_std == (0.5, 0.5, 0.5)
    assert a.weights_sha256 and len(a.weights_sha256) == 64 and a.weights_sha256 == b.weights_sha256
    assert not any(p.requires_grad for p in a.parameters()) and not a.training
    x = (_pattern() - 0.5) / 0.5
    with torch.no_grad():
        la, lb = a(x), b(x)
    assert torch.equal(la, lb) and torch.equal(la.argmax(1), lb.argmax(1))
    assert la.softmax(1).max() > 0.05  # a confident-ish guess, not a flat random-net output
    assert not torch.allclose(la[0], la[1])  # different patterns, different logits
    feats = StageFeatures(a, (0, 1, 2, 3, 4, 5), map_size=14)(_pattern())  # (2, 464, 14, 14)
    assert feats.std() > 0 and (feats[0] - feats[1]).abs().mean() > 1e-3
    assert (feats.flatten(2).std(dim=2) > 0).float().mean() > 0.5  # most channels vary spatially
    r = create_backbone("tf_efficientnet_lite0", "random")
    with torch.no_grad():
        assert not torch.allclose(r(x), la)


def test_weights_from_a_file_and_a_checkpoint(tmp_path) -> None:
    src = create_backbone("tf_efficientnet_lite0", "random")
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    torch.save(src.state_dict(), tmp_path / "sd.pth")
    for name in ("ckpt.pth", "sd.pth"):
        m = create_backbone("tf_efficientnet_lite0", str(tmp_path / name))
        assert torch.equal(m.conv_stem.weight, src.conv_stem.weight)
        assert len(m.weights_sha256) == 64
    torch.save({"conv_stem.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="do not match"):
        create_backbone("tf_efficientnet_lite0", str(tmp_path / "bad.pth"))


def test_missing_weights_file_says_how_to_fix(tmp_path) -> None:
    with pytest.raises(UserError) as err:
        create_backbone("tf_efficientnet_lite0", str(tmp_path / "nope.pth"))
    assert "backbone_weights=" in str(err.value) and "nope.pth" in str(err.value)


def test_uncached_pretrained_model_is_an_error_not_a_download(tmp_path, monkeypatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(backbones, "lite_package_weights", lambda name: None)
    with pytest.raises(UserError) as err:
        create_backbone("tf_efficientnet_lite0", "pretrained")
    msg = str(err.value)
    assert "--set backbone_weights=" in msg and "cache" in msg and "never downloaded" in msg
    with pytest.raises(UserError, match="not a timm model"):
        create_backbone("no_such_net", "random")


def test_a_backbone_rebuilt_for_a_checkpoint_does_not_claim_random_weights(caplog: pytest.LogCaptureFixture) -> None:
    """The job log said "random weights (asked for explicitly)" before every checkpoint load."""
    import logging

    from engine.models.backbones import FROM_CHECKPOINT

    with caplog.at_level(logging.INFO, logger="engine.models.backbones"):
        model = create_backbone("tf_efficientnet_lite0", FROM_CHECKPOINT)
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    assert model.weights_source == FROM_CHECKPOINT
