"""DFR: stage channels from the modules, aggregation modes, PCA width, score rules, ROI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.models.backbones import create_backbone
from engine.models.base import Prediction
from engine.models.dfr import DFR, FeatureStats, StageFeatures, stage_channels


@pytest.fixture(scope="module")
def lite0_random() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("tf_efficientnet_lite0", "random")


def test_stage_channels_are_read_from_the_modules(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0, 1, 2, 3, 4, 5), map_size=16)
    assert feats.channels == [16, 24, 40, 80, 112, 192]
    other = create_backbone("efficientnet_b2", "random")  # wider: different channels
    feats2 = StageFeatures(other, (1, 3, 5), map_size=8)
    x = torch.rand(1, 3, 64, 64)
    h = other.bn1(other.conv_stem(x))
    expect = []
    for i, blk in enumerate(other.blocks[:6]):
        h = blk(h)
        if i in (1, 3, 5):
            expect.append(h.shape[1])
    assert feats2.channels == expect and feats2.channels != [24, 80, 192]
    assert feats2(x).shape == (1, sum(expect), 8, 8)
    assert stage_channels(other.blocks[2]) == other.blocks[2][-1].bn3.num_features


def test_unknown_layers_are_errors(lite0_random) -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        StageFeatures(lite0_random, (0, 9), map_size=8)
    with pytest.raises(ValueError, match="conv_stem"):
        StageFeatures(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), (0,), map_size=8)
    with pytest.raises(ValueError, match="BatchNorm"):
        stage_channels(torch.nn.Conv2d(3, 4, 1))


@pytest.mark.parametrize("aggregation", ["ours", "thesis"])
def test_aggregations_give_the_same_shapes(lite0_random, aggregation: str) -> None:
    feats = StageFeatures(lite0_random, (0, 1, 2, 3, 4, 5), map_size=16, aggregation=aggregation)
    model = DFR(feats, latent_dim=8).eval()
    x = torch.rand(2, 3, 64, 64)
    f = feats(x)
    assert f.shape == (2, 464, 16, 16)
    pred = model(x)
    assert isinstance(pred, Prediction)
    assert pred.score.shape == (2,) and pred.anomaly_map.shape == (2, 64, 64)
    assert pred.anomaly_map.dtype == torch.float32
    model.train()
    assert not feats.training  # the frozen backbone keeps its BatchNorm statistics
    assert model(x).ndim == 0  # training mode: the loss


def test_aggregations_agree_roughly(lite0_random) -> None:
    x = torch.rand(1, 3, 64, 64)
    a = StageFeatures(lite0_random, (1, 2), map_size=8, aggregation="ours")(x)
    b = StageFeatures(lite0_random, (1, 2), map_size=8, aggregation="thesis")(x)
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.9


def test_autoencoder_widths(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0, 1), map_size=8)  # C = 40
    model = DFR(feats, latent_dim=6)
    convs = [m for m in model.cae.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == \
        [(40, 26), (26, 12), (12, 6), (6, 12), (12, 26), (26, 40)]


def test_pca_width_on_data_of_known_rank() -> None:
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(64, 5)))[0]  # (64, 5) orthonormal
    stats = FeatureStats(64)
    for _ in range(10):  # streamed in batches
        z = rng.normal(size=(500, 5))  # equal variance per direction: 4 comps = 80%, 5 = 100%
        stats.update(torch.from_numpy(z @ basis.T + 1e-3 * rng.normal(size=(500, 64)) + 3.0))
    assert stats.latent_dim(0.9) == 5
    assert stats.latent_dim(0.7) == 4
    assert stats.n == 5000
    assert torch.allclose(stats.mean, torch.full((64,), 3.0, dtype=torch.float64), atol=0.2)


def test_streamed_covariance_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(300, 7)) * np.arange(1, 8)
    stats = FeatureStats(7)
    for chunk in np.array_split(data, 4):
        stats.update(torch.from_numpy(chunk))
    assert np.allclose(stats.covariance().numpy(), np.cov(data, rowvar=False))
    assert np.allclose(stats.std.numpy(), data.std(axis=0, ddof=1))


def test_score_rules_border_and_roi(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0,), map_size=8)
    amap = torch.zeros(1, 20, 20)
    amap[0, 0, 0] = 10.0  # a hot corner pixel
    amap[0, 10, 10:14] = 1.0  # 4 warm pixels inside
    m = DFR(feats, 4, score="max").eval()
    assert float(m.score_from_map(amap)) == 10.0
    m = DFR(feats, 4, score="max", border_margin=2).eval()
    assert float(m.score_from_map(amap)) == 1.0
    m = DFR(feats, 4, score="topk", topk_ratio=0.01).eval()  # k = 4 of 400
    assert float(m.score_from_map(amap)) == pytest.approx((10 + 1 + 1 + 1) / 4)
    roi = torch.ones(20, 20, dtype=torch.bool)
    roi[:5, :5] = False
    m.set_roi(roi)
    assert float(m.score_from_map(amap)) == pytest.approx(1.0)
    pred = DFR(feats, 4).eval()
    pred.set_roi(torch.ones(16, 16, dtype=torch.bool).triu())
    out = pred(torch.rand(1, 3, 16, 16))
    assert float(out.anomaly_map[0].tril(-1).abs().sum()) == 0.0


def test_standardisation_and_residual_scale(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0,), map_size=8)
    m = DFR(feats, 4, feature_standardise=True, residual_norm=True)
    m.set_feature_stats(torch.full((16,), 2.0), torch.full((16,), 4.0))
    f = torch.full((1, 16, 8, 8), 6.0)
    assert torch.allclose(m.normalise(f), torch.ones_like(f))
    m.eval()
    base = m.map_from_features(f, (8, 8))
    m.err_scale.fill_(2.0)
    assert torch.allclose(m.map_from_features(f, (8, 8)), base / 2)


def test_position_normalisation(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0,), map_size=8)
    m = DFR(feats, 4, position_norm=True).eval()
    f = torch.rand(2, 16, 8, 8)
    raw = m.raw_maps(f)[:, 0]  # (2, 8, 8): one group, all channels
    m.pos_mean.copy_(raw[0])
    m.pos_std.fill_(0.5)
    out = m.map_from_features(f, (8, 8))
    assert torch.allclose(out[0], torch.zeros(8, 8), atol=1e-5)
    assert torch.allclose(out[1], (raw[1] - raw[0]) / 0.5, atol=1e-4)


def test_stage_normalisation_weighs_each_stage_equally(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0, 1), map_size=8)  # 16 + 24 channels
    with pytest.raises(ValueError, match="position_norm"):
        DFR(feats, 4, stage_norm=True)
    m = DFR(feats, 4, position_norm=True, stage_norm=True).eval()
    assert m.pos_mean.shape == (2, 8, 8)
    f = torch.rand(2, 40, 8, 8)
    err = m.channel_errors(f)
    per_stage = torch.stack([err[:, :16].mean(1), err[:, 16:].mean(1)], dim=1)  # (2, 2, 8, 8)
    assert torch.allclose(m.raw_maps(f), per_stage, atol=1e-6)
    m.pos_mean.copy_(per_stage[0])
    m.pos_std.copy_(torch.tensor([0.5, 2.0]).view(2, 1, 1).expand(2, 8, 8))
    out = m.map_from_features(f, (8, 8))
    assert torch.allclose(out[0], torch.zeros(8, 8), atol=1e-5)
    z = (per_stage[1] - per_stage[0]) / torch.tensor([0.5, 2.0]).view(2, 1, 1)
    assert torch.allclose(out[1], z.mean(0), atol=1e-4)  # mean of the two stages' z-scores
    m.stage_combine = "max"
    assert torch.allclose(m.map_from_features(f, (8, 8))[1], z.amax(0), atol=1e-4)  # the most unusual stage


def test_image_median_is_taken_off_each_stage_up_to_the_training_cap(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0, 1), map_size=8)
    m = DFR(feats, 4, position_norm=True, stage_norm=True, image_median=True).eval()
    f = torch.rand(3, 40, 8, 8)
    z = m.stage_maps(f, subtract_median=False)  # (3, 2, 8, 8): no training statistics yet, raw errors
    med = z.flatten(2).median(dim=-1).values  # (3, 2)
    assert torch.allclose(m.stage_maps(f), z - med[..., None, None])  # no cap: the whole median
    m.median_cap.copy_(med[0])  # as if image 0 were the noisiest OK training image
    capped = m.stage_maps(f)
    for i in range(3):
        expect = z[i] - torch.minimum(med[i], med[0])[:, None, None]
        assert torch.allclose(capped[i], expect)
    assert torch.allclose(m.map_from_features(f, (8, 8)), capped.mean(1))
    m.set_roi(torch.zeros(8, 8, dtype=torch.bool).index_fill_(1, torch.arange(4), True))  # left half
    assert torch.allclose(m.image_medians(z), z[..., :4].flatten(2).median(dim=-1).values)


def test_the_image_score_can_combine_the_stages_differently_from_the_heatmap(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0, 1), map_size=8)
    with pytest.raises(ValueError, match="score_combine"):
        DFR(feats, 4, position_norm=True, stage_norm=True, score_combine="median")
    m = DFR(feats, 4, position_norm=True, stage_norm=True, stage_combine="mean", score_combine="max").eval()
    f = torch.rand(2, 40, 8, 8)
    z = m.stage_maps(f)  # (2, 2, 8, 8)
    pred = m.predict_features(f, (8, 8))
    assert torch.allclose(pred.anomaly_map, z.mean(1))  # the heatmap: mean of the stages
    assert torch.allclose(pred.score, z.amax(1).flatten(1).amax(1))  # the score: the most unusual stage
    assert bool((pred.score > pred.anomaly_map.flatten(1).amax(1)).all())
    m.score_combine = "map"
    assert torch.allclose(m.predict_features(f, (8, 8)).score, z.mean(1).flatten(1).amax(1))
    one = DFR(feats, 4, position_norm=True, score_combine="max").eval()  # one map: nothing else to combine
    pred = one.predict_features(f, (8, 8))
    assert torch.allclose(pred.score, pred.anomaly_map.flatten(1).amax(1))


def test_checkpoints_from_before_stage_norm_still_load(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0,), map_size=8)
    old = DFR(feats, 4, position_norm=True).eval()
    old.pos_mean.fill_(0.25)
    state = old.state_dict()
    state["pos_mean"], state["pos_std"] = state["pos_mean"][0], state["pos_std"][0]  # the old (m, m) layout
    new = DFR(feats, 4, position_norm=True).eval()
    new.load_state_dict(state, strict=True)
    assert new.pos_mean.shape == (1, 8, 8) and float(new.pos_mean.mean()) == 0.25


def test_checkpoints_from_before_the_position_statistics_still_load(lite0_random) -> None:
    feats = StageFeatures(lite0_random, (0,), map_size=8)
    state = DFR(feats, 4).state_dict()
    del state["pos_mean"], state["pos_std"], state["median_cap"]  # saved before position_norm existed
    new = DFR(feats, 4).eval()
    new.load_state_dict(state, strict=True)
    assert float(new.pos_mean.abs().sum()) == 0 and float(new.pos_std.min()) == 1
    assert bool(torch.isinf(new.median_cap).all())
