"""DFR: stage channels from the modules, aggregation modes, PCA width, the normaliser, score rules, ROI,
and checkpoints of earlier layouts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from engine.config import DFRConfig
from engine.models.backbones import create_backbone
from engine.models.base import Prediction
from engine.models.dfr import DFR, ErrorNormaliser, FeatureStats, StageFeatures


@pytest.fixture(scope="module")
def lite0_random() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone("tf_efficientnet_lite0", "random")


def features(backbone: torch.nn.Module, stages: tuple[int, ...], map_size: int, **kw) -> StageFeatures:
    return StageFeatures(copy.deepcopy(backbone), stages, map_size, **kw)  # pruning changes the backbone


def dfr(backbone: torch.nn.Module, stages: tuple[int, ...] = (0,), latent: int = 4, **fields) -> DFR:
    cfg = DFRConfig(stages=stages, map_size=8, input_size=fields.pop("input_size", 8), **fields)
    return DFR(cfg, features(backbone, cfg.stages, cfg.map_size), latent).eval()


def test_stage_channels_are_read_from_the_modules(lite0_random) -> None:
    assert features(lite0_random, (0, 1, 2, 3, 4, 5), 16).channels == [16, 24, 40, 80, 112, 192]
    other = create_backbone("efficientnet_b2", "random")  # wider: different channels
    x = torch.rand(1, 3, 64, 64)
    h = other.bn1(other.conv_stem(x))
    expect = []
    for i, blk in enumerate(other.blocks[:6]):
        h = blk(h)
        if i in (1, 3, 5):
            expect.append(h.shape[1])
    feats = features(other, (1, 3, 5), 8)
    assert feats.channels == expect and feats.channels != [24, 80, 192]
    assert feats(x).shape == (1, sum(expect), 8, 8)
    assert len(feats.backbone.blocks) == 6  # pruned after the last stage used


def test_stage_outputs_are_the_blocks_outputs(lite0_random) -> None:
    feats = features(lite0_random, (1, 4), 8)
    x = torch.rand(2, 3, 64, 64)
    h = lite0_random.bn1(lite0_random.conv_stem((x - feats.mean) / feats.std))
    outs = []
    for i, blk in enumerate(lite0_random.blocks[:5]):
        h = blk(h)
        if i in (1, 4):
            outs.append(h)
    got = feats.stage_outputs(x)
    assert [o.shape for o in got] == [o.shape for o in outs]
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(got, outs))  # NHWC inside: rounding


def test_unknown_layers_are_errors(lite0_random) -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        features(lite0_random, (0, 9), 8)
    with pytest.raises(ValueError, match="not a timm EfficientNet"):
        StageFeatures(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), (0,), map_size=8)


@pytest.mark.parametrize("aggregation", ["ours", "thesis"])
def test_aggregations_give_the_same_shapes(lite0_random, aggregation: str) -> None:
    model = dfr(lite0_random, (0, 1, 2, 3, 4, 5), 8, input_size=64, aggregation=aggregation)
    x = torch.rand(2, 3, 64, 64)
    assert model.features(x).shape == (2, 464, 8, 8)
    pred = model(x)
    assert isinstance(pred, Prediction)
    assert pred.score.shape == (2,) and pred.anomaly_map.shape == (2, 64, 64)
    assert pred.anomaly_map.dtype == torch.float32
    model.train()
    assert not model.features.training  # the frozen backbone keeps its BatchNorm statistics
    assert model.loss(model.features(x)).ndim == 0


def test_aggregations_agree_roughly(lite0_random) -> None:
    x = torch.rand(1, 3, 64, 64)
    a = features(lite0_random, (1, 2), 8, aggregation="ours")(x)
    b = features(lite0_random, (1, 2), 8, aggregation="thesis")(x)
    assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] > 0.9


def test_autoencoder_widths(lite0_random) -> None:
    model = dfr(lite0_random, (0, 1), latent=6)  # C = 40
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
    amap = torch.zeros(1, 20, 20)
    amap[0, 0, 0] = 10.0  # a hot corner pixel
    amap[0, 10, 10:14] = 1.0  # 4 warm pixels inside
    assert float(dfr(lite0_random, input_size=20).score(amap)) == 10.0
    assert float(dfr(lite0_random, input_size=20, border_margin=2).score(amap)) == 1.0
    m = dfr(lite0_random, input_size=20, score="topk", topk_ratio=0.01)  # k = 4 of 400
    assert float(m.score(amap)) == pytest.approx((10 + 1 + 1 + 1) / 4)
    roi = torch.ones(20, 20, dtype=torch.bool)
    roi[:5, :5] = False
    m.set_roi(roi)
    assert float(m.score(amap)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="ROI is"):
        m.score(torch.zeros(1, 16, 16))
    pred = dfr(lite0_random, input_size=16)
    pred.set_roi(torch.ones(16, 16, dtype=torch.bool).triu())
    out = pred(torch.rand(1, 3, 16, 16))
    assert float(out.anomaly_map[0].tril(-1).abs().sum()) == 0.0


def test_standardisation_and_residual_scale(lite0_random) -> None:
    m = dfr(lite0_random, feature_standardise=True, residual_norm=True)
    stats = FeatureStats(16)
    stats.update(torch.cat([torch.full((1, 16), -2.0), torch.full((1, 16), 6.0)]))  # mean 2, std 5.66
    m.fit_feature_scaling(stats)
    f = torch.full((1, 16, 8, 8), 2.0)
    assert torch.allclose(m.standardise(f), torch.zeros_like(f))
    base = m.normaliser(m.errors(f))
    m.normaliser.err_scale.fill_(2.0)
    assert torch.allclose(m.normaliser(m.errors(f)), base / 2)


def test_position_and_stage_normalisation() -> None:
    norm = ErrorNormaliser([16, 24], 8, position_norm=True)
    err = torch.rand(2, 40, 8, 8)
    per_stage = torch.stack([err[:, :16].mean(1), err[:, 16:].mean(1)], dim=1)  # (2, 2, 8, 8)
    assert torch.allclose(norm.group_maps(err), per_stage, atol=1e-6)
    norm.pos_mean.copy_(per_stage[0])
    norm.pos_std.copy_(torch.tensor([0.5, 2.0]).view(2, 1, 1).expand(2, 8, 8))
    out = norm(err)
    assert torch.allclose(out[0], torch.zeros(2, 8, 8), atol=1e-5)
    assert torch.allclose(out[1], (per_stage[1] - per_stage[0]) / torch.tensor([0.5, 2.0]).view(2, 1, 1), atol=1e-4)
    one = ErrorNormaliser([40], 8)
    assert torch.allclose(one(err)[:, 0], err.mean(1))  # one group, nothing fitted: the raw error map


def test_fit_gives_z_scores_of_the_training_errors() -> None:
    torch.manual_seed(0)
    train = [torch.rand(4, 6, 8, 8) + torch.arange(8.0) for _ in range(5)]  # 20 images, level by position
    norm = ErrorNormaliser([6], 8, position_norm=True, image_median=True)
    calls = []
    norm.fit(lambda: calls.append(1) or iter(train), 20)
    assert len(calls) == norm.passes == 1  # one pass over the training images' errors gives both statistics
    z = torch.cat([norm(e, subtract_median=False) for e in train])  # (20, 1, 8, 8)
    assert torch.allclose(z.mean(0), torch.zeros(1, 8, 8), atol=1e-4)
    assert float(z.std(0).mean()) == pytest.approx(1.0, abs=0.05)  # the same spread everywhere: little shrinkage
    assert torch.allclose(norm.median_cap, norm.medians(z).amax(0))


def test_image_median_is_taken_off_each_stage_up_to_the_training_cap() -> None:
    norm = ErrorNormaliser([16, 24], 8, position_norm=True, image_median=True)
    err = torch.rand(3, 40, 8, 8)
    z = norm(err, subtract_median=False)  # (3, 2, 8, 8): no training statistics yet, raw errors
    med = z.flatten(2).median(dim=-1).values  # (3, 2)
    assert torch.allclose(norm.medians(z), med)
    assert torch.allclose(norm(err), z - med[..., None, None])  # no cap: the whole median
    norm.median_cap.copy_(med[0])  # as if image 0 were the noisiest OK training image
    capped = norm(err)
    for i in range(3):
        assert torch.allclose(capped[i], z[i] - torch.minimum(med[i], med[0])[:, None, None])
    norm.set_region(np.zeros((8, 8), bool) | (np.arange(8) < 4))  # left half
    assert torch.allclose(norm.medians(z), z[..., :4].flatten(2).median(dim=-1).values)


def test_the_median_follows_the_roi(lite0_random) -> None:
    m = dfr(lite0_random, (0, 1), input_size=16, position_norm=True, stage_norm=True, image_median=True)
    roi = np.zeros((16, 16), bool)
    roi[:, :8] = True  # left half of the input = left half of the 8x8 map
    m.set_roi(roi)
    assert m.normaliser.median_index.tolist() == [r * 8 + c for r in range(8) for c in range(4)]
    m.set_roi(None)
    assert m.normaliser.median_index is None


def test_the_image_score_can_combine_the_stages_differently_from_the_heatmap(lite0_random) -> None:
    m = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True, stage_combine="mean", score_combine="max")
    x = torch.rand(2, 3, 8, 8)
    z = m.normaliser(m.errors(m.features(x)))  # (2, 2, 8, 8)
    pred = m(x)
    assert torch.allclose(pred.anomaly_map, z.mean(1))  # the heatmap: mean of the stages
    assert torch.allclose(pred.score, z.amax(1).flatten(1).amax(1))  # the score: the most unusual stage
    assert bool((pred.score > pred.anomaly_map.flatten(1).amax(1)).all())
    assert pred.score_map is not None and torch.allclose(pred.score_map, z.amax(1))  # what explains the score
    assert torch.allclose(pred.score, pred.score_map.flatten(1).amax(1))
    same = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True, score_combine="map")
    same.load_state_dict(m.state_dict())
    assert torch.allclose(same(x).score, z.mean(1).flatten(1).amax(1))
    assert same(x).score_map is None  # the heatmap is the score's map
    one = dfr(lite0_random, (0, 1), position_norm=True, score_combine="max")  # one map: nothing else to combine
    pred = one(x)
    assert torch.allclose(pred.score, pred.anomaly_map.flatten(1).amax(1))
    assert pred.score_map is None


def _legacy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state_dict layout of checkpoints written before this package: backbone layers directly
    under `features.`, the error statistics directly on the model."""
    out = {}
    for key, value in state.items():
        key = key.replace("features.backbone.", "features.").replace("normaliser.", "")
        out[key] = value
    return out


def test_checkpoints_of_the_earlier_layouts_still_load(lite0_random) -> None:
    old = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True)
    old.normaliser.pos_mean.fill_(0.25)
    x = torch.rand(2, 3, 8, 8)
    state = _legacy(old.state_dict())
    assert "features.conv_stem.weight" in state and "pos_mean" in state
    new = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True)
    new.load_state_dict(state, strict=True)
    assert torch.equal(new(x).anomaly_map, old(x).anomaly_map)
    before_stage_norm = _legacy(dfr(lite0_random, position_norm=True).state_dict())
    before_stage_norm["pos_mean"] = torch.full((8, 8), 0.5)  # the (m, m) layout
    del before_stage_norm["pos_std"], before_stage_norm["median_cap"], before_stage_norm["feat_mean"]
    new = dfr(lite0_random, position_norm=True)
    new.load_state_dict(before_stage_norm, strict=True)
    assert new.normaliser.pos_mean.shape == (1, 8, 8) and float(new.normaliser.pos_mean.mean()) == 0.5
    assert float(new.normaliser.pos_std.min()) == 1 and bool(torch.isinf(new.normaliser.median_cap).all())


def test_whole_image_term_reconstructs_ok_layouts_and_flags_others() -> None:
    from engine.models.dfr.whole import WholeImage

    torch.manual_seed(0)
    term = WholeImage(channels=3, map_size=8, grid=4)
    basis = torch.randn(2, 3 * 16)  # OK images: two patterns mixed, nothing else
    ok = (torch.randn(40, 2) @ basis).view(40, 3, 4, 4).repeat_interleave(2, -1).repeat_interleave(2, -2)
    vectors = term.vectors(ok)  # (40, 48): each image pooled to the 4x4 grid
    term.fit(vectors, 0.999)
    assert term.basis.shape == (48, 2)  # two components keep all of the variance
    assert float(term(ok).max()) < 1e-8
    odd = ok[:1].clone()
    odd[:, :, :4, :4] += 1.0  # one quadrant off the OK layout
    assert float(term(odd)) > 1e-3
    # without held-out images, each training image's error comes from a fit without it: a part
    # the other folds cannot explain (here: a third pattern only one image has) scores high
    one_off = vectors.clone()
    one_off[0] += 5 * torch.randn(48)
    cross = term.cross_errors(one_off, 0.999)
    assert cross.shape == (40,) and float(cross[0]) > 100 * float(cross[1:].max())
    assert term.cross_errors(vectors[:1], 0.999).shape == (1,)  # one training image: nothing to leave out
    term.calibrate(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.0, 0.0, 3.0]))
    assert torch.allclose(term.fuse(torch.tensor([2.0]), torch.tensor([1.0])), torch.tensor([0.0]))


def test_the_whole_image_error_joins_the_score_not_the_heatmap(lite0_random) -> None:
    m = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True, whole_grid=4)
    f_ok = m.features(torch.rand(12, 3, 8, 8))
    m.whole.fit(m.whole.vectors(f_ok), 0.9)
    m.whole.calibrate(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 2e-3]))
    x = torch.rand(2, 3, 8, 8)
    pred = m(x)
    amap, _, peak = m.judge(m.features(x), (8, 8))
    assert torch.allclose(pred.anomaly_map, amap) and pred.score_map is None
    whole = m.whole(m.features(x))
    assert torch.allclose(pred.score, (peak - 1.0) / m.whole.calib_std[0] + (whole - 1e-3) / m.whole.calib_std[1])
    again = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True, whole_grid=4)
    again.load_state_dict(m.state_dict(), strict=True)  # the basis' width comes from the checkpoint
    assert again.whole.basis.shape == m.whole.basis.shape and torch.equal(again(x).score, pred.score)
    roi = torch.zeros(8, 8, dtype=torch.bool)
    roi[:, :4] = True
    m.set_roi(roi)  # outside the ROI nothing counts, not in the whole-image vector either
    v = m.whole.vectors(m.features(x)).view(2, -1, 4, 4)
    assert float(v[..., 2:].abs().sum()) == 0.0 and float(v[..., :2].abs().sum()) > 0


def test_whole_global_adds_the_more_unusual_of_the_two_whole_image_errors(lite0_random) -> None:
    m = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True, whole_grid=4, whole_global=True)
    f_ok = m.features(torch.rand(12, 3, 8, 8))
    for whole in (m.whole, m.whole_global):
        whole.fit(whole.vectors(f_ok), 0.9)
        whole.calibrate(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 2e-3]))
    assert m.whole_global.mean.shape == (f_ok.shape[1],)  # one cell: the image's mean stage feature vector
    x = torch.rand(2, 3, 8, 8)
    f = m.features(x)
    peak = m.judge(f, (8, 8))[2]
    z_grid, z_cell = m.whole.z(m.whole(f)), m.whole_global.z(m.whole_global(f))
    z_peak = (peak - 1.0) / m.whole.calib_std[0]
    assert torch.allclose(m(x).score, z_peak + torch.maximum(z_grid, z_cell))
    m.whole_global.calib_mean[1] = -1e6  # the single cell far more unusual: it is what counts
    assert torch.allclose(m(x).score, z_peak + m.whole_global.z(m.whole_global(f)))
    m.whole_global.calib_mean[1] = 1e6  # far less: the grid's error as without it
    assert torch.allclose(m(x).score, z_peak + z_grid)
    again = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True, whole_grid=4, whole_global=True)
    again.load_state_dict(m.state_dict(), strict=True)  # both bases' widths come from the checkpoint
    assert torch.equal(again(x).score, m(x).score)


def test_nearest_ok_feature_flags_a_new_combination_the_memory_never_held() -> None:
    from engine.models.dfr.nearest import NearestOK

    torch.manual_seed(0)
    term = NearestOK(channels=2, map_size=8, grid=4, weight=2.0)
    # OK parts: every cell is one of two features, (1, 0) or (0, 1); never both at once
    pick = torch.randint(0, 2, (6, 1, 4, 4)).float()
    ok = torch.cat([pick, 1 - pick], 1).repeat_interleave(2, -1).repeat_interleave(2, -2)  # (6, 2, 8, 8)
    term.fit(iter([term.cells(ok[:3]), term.cells(ok[3:])]), n=6, size=60, seed=0)
    assert term.memory.shape == (60, 2) and term.owner.tolist() == [i // 10 for i in range(60)]
    assert float(term(ok).max()) < 1e-3  # every OK cell is in the memory
    odd = ok[:1].clone()
    odd[:, :, :2, :2] = 1.0  # one cell (2x2 positions) both at once: each half seen, the pair never
    dist = term(odd)
    assert dist.shape == (1, 8, 8) and float(dist[0, 0, 0]) > 0.9 and float(dist[0, 7, 7]) < 1e-3
    # a training image's own rows left out: its distance as an unseen image's (here the other
    # images hold the same two features, so it stays near zero; with only its own rows, inf)
    assert float(term.distances(term.cells(ok[:1]), torch.tensor([0])).max()) < 1e-3
    term.calibrate(torch.full((4, 8, 8), 3.0) + torch.randn(4, 8, 8), torch.rand(4, 8, 8))
    z = term.fuse(torch.full((1, 8, 8), float(term.calib_mean[0])), torch.full((1, 8, 8), float(term.calib_mean[1])))
    assert float(z.abs().max()) < 1e-5  # both terms at their OK mean: zero
    one = term.fuse(torch.full((1, 8, 8), float(term.calib_mean[0])),
                    torch.full((1, 8, 8), float(term.calib_mean[1] + term.calib_std[1])))
    assert torch.allclose(one, torch.full_like(one, 2.0))  # one std further from any OK feature: the weight
    term.calibrate(torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))  # one image, no spread: unscaled, not blown up
    assert term.calib_std.tolist() == [1.0, 1.0]


def test_nearest_tail_scale_keeps_a_long_tailed_term_from_drowning_the_other() -> None:
    from engine.models.dfr.nearest import NearestOK

    # OK maps: the reconstruction term skewed (exponential: a long upper tail), the distance term
    # uniform 0-1. By z-scores the first's OK positions often reach 3-4, so a defect seen by the
    # distance alone (at most 1.7 there) is lost among them; the tail scale puts both terms' OK
    # tops at 1
    gen = torch.Generator().manual_seed(0)
    recon = -torch.rand(8, 8, 8, generator=gen).log()
    dist = torch.rand(8, 8, 8, generator=gen)
    terms = {scale: NearestOK(2, 8, 4, 1.0, scale) for scale in ("tail", "std")}
    for term in terms.values():
        term.calibrate(recon, dist)
    tail, std = terms["tail"], terms["std"]
    values = recon.flatten().sort().values
    assert float(tail.calib_mean[0]) == float(values[round(0.5 * 511)])  # the median
    assert float(tail.calib_std[0]) == float(values[round(0.99 * 511)] - values[round(0.5 * 511)])
    assert torch.allclose(std.calib_mean.float(), torch.stack([recon.mean(), dist.mean()]))
    assert torch.allclose(std.calib_std.float(), torch.stack([recon.std(), dist.std()]))
    # a place at the top of the OK distances, reconstruction at its median: with the tail scale it
    # stands as high as a place at the top of the OK reconstruction errors, by z-scores far lower
    at = {scale: term.fuse(torch.full((1, 8, 8), float(values[256])), torch.full((1, 8, 8), float(dist.max())))
          for scale, term in terms.items()}
    top = {scale: term.fuse(torch.full((1, 8, 8), float(values[round(0.99 * 511)])),
                            torch.full((1, 8, 8), float(dist.median()))) for scale, term in terms.items()}
    assert float(at["tail"].max()) > 0.8 * float(top["tail"].max())
    assert float(at["std"].max()) < 0.5 * float(top["std"].max())


def test_farthest_first_is_the_greedy_k_center_order_and_keeps_a_rare_ok_look() -> None:
    from engine.models.dfr.nearest import NearestOK, farthest_first

    torch.manual_seed(0)
    x = torch.randn(600, 24) * torch.rand(600, 1) * 3
    keep = farthest_first(x, 90, torch.Generator().manual_seed(4), dim=64, block=8)
    first = int(torch.randint(600, (1,), generator=torch.Generator().manual_seed(4)))
    closest, order = torch.full((600,), float("inf")), [first]  # the greedy one pick at a time
    for _ in range(89):
        closest = torch.minimum(closest, ((x - x[order[-1]]) ** 2).sum(1))
        order.append(int(closest.argmax()))
    assert keep.tolist() == order  # rounds of candidates change nothing (24 channels: no projection)
    # OK parts: 8 images of 16 cells, all background (0) but one cell of one image (a rare OK look)
    ok = torch.zeros(8, 3, 4, 4) + 0.01 * torch.randn(8, 3, 4, 4)
    ok[5, :, 2, 1] = 1.0
    fit = {pick: NearestOK(3, 4, 4, 1.0) for pick in ("even", "coreset")}
    for pick, t in fit.items():
        t.fit(iter([t.cells(ok[:4]), t.cells(ok[4:])]), n=8, size=8, seed=0, pick=pick)
    rare = fit["coreset"].memory == ok[5, :, 2, 1]
    assert fit["coreset"].memory.shape == (8, 3) and bool(rare.all(1).any())  # kept once, among 127 background cells
    assert int(fit["coreset"].owner[rare.all(1)]) == 5  # and remembers the image it came from
    assert float(fit["coreset"](ok[5:6])[0, 2, 1]) < 1e-6 < float(fit["even"](ok[5:6])[0, 2, 1])


def test_the_nearest_feature_term_joins_the_heatmap_and_round_trips(lite0_random) -> None:
    m = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True, nearest_size=40, nearest_grid=4)
    f_ok = m.features(torch.rand(10, 3, 8, 8))
    m.nearest.fit(iter([m.nearest.cells(f_ok)]), n=10, size=40, seed=0)
    m.nearest.calibrate(m.reconstruction_map(f_ok), m.nearest(f_ok))
    x = torch.rand(2, 3, 8, 8)
    f = m.features(x)
    pred = m(x)
    expect = m.nearest.fuse(m.reconstruction_map(f), m.nearest(f))
    assert torch.allclose(pred.anomaly_map, expect, atol=1e-5)  # 8x8 map at 8x8 input: no resampling
    assert torch.allclose(pred.score, expect.flatten(1).amax(1), atol=1e-5)
    again = dfr(lite0_random, (0, 1), position_norm=True, stage_norm=True, nearest_size=40, nearest_grid=4)
    again.load_state_dict(m.state_dict(), strict=True)  # the memory's length comes from the checkpoint
    assert again.nearest.memory.shape == (40, m.nearest.memory.shape[1]) and torch.equal(again(x).score, pred.score)
    roi = torch.zeros(8, 8, dtype=torch.bool)
    roi[:, :4] = True
    m.set_roi(roi)  # the memory is drawn from the cells inside the ROI only
    m.nearest.fit(iter([m.nearest.cells(f_ok)]), n=10, size=40, seed=0)
    cells = m.nearest.cells(f_ok)[:, m.nearest.inside]  # (10, 8, C) the cells inside
    member = (m.nearest.memory[:, None, None] == cells[None]).all(-1).any(-1).any(-1)
    assert bool(member.all())


def test_the_fine_stage_is_tapped_in_the_same_pass_and_leaves_the_stages_map_as_it_was(lite0_random) -> None:
    plain, both = features(lite0_random, (1, 4), 8), features(lite0_random, (1, 4), 8, fine_stage=2)
    x = torch.rand(2, 3, 64, 64)
    f, fine, _ = both.tapped(x)
    assert both.fine_channels == 40 and fine.shape == (2, 40, 8, 8) and plain.tapped(x).fine is None
    assert torch.allclose(f, plain(x), atol=1e-5) and torch.allclose(both(x), f)  # the stages' map unchanged
    stage2 = features(lite0_random, (2,), 8)(x)
    assert torch.allclose(fine, stage2, atol=1e-5)  # brought to the map as a stage of its own would be
    with pytest.raises(ValueError, match="unknown stage"):
        features(lite0_random, (1,), 8, fine_stage=9)


def test_global_stages_give_the_single_cell_the_image_mean_of_other_stages(lite0_random) -> None:
    from engine.models.dfr.features import POOLED_GRID

    cfg = DFRConfig(stages=(1,), map_size=8, input_size=64, position_norm=True, stage_norm=True, whole_grid=4,
                    whole_global=True, global_stages=(2, 5))
    m = DFR(cfg, features(lite0_random, cfg.stages, 8, pooled_stages=cfg.global_stages), 4).eval()
    x = torch.rand(2, 3, 64, 64)
    f, fine, grid = m.features.tapped(x)
    assert fine is None and grid.shape == (2, 40 + 192, POOLED_GRID, POOLED_GRID)
    assert torch.allclose(f, features(lite0_random, (1,), 8)(x), atol=1e-5)  # the stages' map as without them
    raw = features(lite0_random, (2,), 8).stage_outputs(x)[0]  # (2, 40, 16, 16) stage 2 as the backbone gives it
    assert torch.allclose(grid[:, :40].mean((2, 3)), raw.float().mean((2, 3)), atol=1e-5)  # the grid keeps its mean
    ok = m.features.tapped(torch.rand(12, 3, 64, 64))
    m.whole.fit(m.whole.vectors(ok.map), 0.9)
    m.whole_global.fit(m.whole_global.vectors(ok.pooled), 0.9)
    assert m.whole_global.mean.shape == (232,)  # the pooled stages' channels, not the map's 24
    for whole in (m.whole, m.whole_global):
        whole.calibrate(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 2e-3]))
    peak = m.judge(f, (64, 64))[2]
    z_cell = m.whole_global.z(m.whole_global(grid))
    expect = (peak - 1.0) / m.whole.calib_std[0] + torch.maximum(m.whole.z(m.whole(f)), z_cell)
    assert torch.allclose(m(x).score, expect)
    roi = torch.zeros(64, 64, dtype=torch.bool)
    roi[:, :32] = True
    m.set_roi(roi)  # the single cell averages the pooled grid inside the ROI only
    v = m.whole_global.vectors(grid * torch.arange(POOLED_GRID).view(1, 1, 1, -1).ge(POOLED_GRID // 2))
    assert float(v.abs().sum()) == 0.0 and float(m.whole_global.vectors(grid).abs().sum()) > 0
    again = DFR(cfg, features(lite0_random, cfg.stages, 8, pooled_stages=cfg.global_stages), 4).eval()
    again.load_state_dict(m.state_dict(), strict=True)
    again.set_roi(roi)
    assert torch.equal(again(x).score, m(x).score)


def test_the_fine_term_sharpens_the_heatmap_only_where_it_is_already_high() -> None:
    from engine.models.dfr.nearest import NearestOK

    term = NearestOK(channels=3, map_size=8, grid=8, weight=2.0)
    term.calibrate(None, torch.rand(4, 8, 8))  # OK distances uniform 0-1: median ~0.5, top ~1
    assert term.calib_mean[0] == 0 and term.calib_std[0] == 1  # no reconstruction term here: left as is
    heat = torch.zeros(1, 8, 8)
    heat[0, 2:6, 2:6] = 3.0  # a blob on the coarse heatmap, four positions wide
    dist = torch.full((1, 8, 8), float(term.calib_mean[1]))  # the fine stage: OK everywhere ...
    dist[0, 4, :] = float(term.calib_mean[1] + 5 * term.calib_std[1])  # ... but one thin line, far from OK
    out = term.refine(heat, dist)
    assert torch.allclose(out[0, 4, 2:6], torch.full((4,), 6.0))  # on the line inside the blob: at most doubled
    assert torch.allclose(out[0, 3, 2:6], torch.full((4,), 3.0), atol=1e-5)  # the blob beside it stays
    assert float(out[0, 4, 0]) == 0.0 and float(out[0, 4, 7]) == 0.0  # the line where the heatmap is quiet: nothing
    assert heat[0, 4, 2] == heat[0, 3, 2] and out[0, 4, 2] > out[0, 3, 2]  # the line now stands out of the blob


def test_the_fine_term_joins_the_heatmap_not_the_score_and_round_trips(lite0_random) -> None:
    cfg = DFRConfig(stages=(1,), map_size=8, input_size=32, position_norm=True, stage_norm=True, nearest_size=40,
                    nearest_grid=4, fine_weight=2.0, fine_stage=2, fine_grid=8)
    build = lambda: DFR(cfg, features(lite0_random, cfg.stages, cfg.map_size, fine_stage=cfg.fine_stage), 4).eval()
    m = build()
    f_ok, fine_ok, _ = m.features.tapped(torch.rand(10, 3, 32, 32))
    m.nearest.fit(iter([m.nearest.cells(f_ok)]), n=10, size=40, seed=0)
    m.nearest.calibrate(m.reconstruction_map(f_ok), m.nearest(f_ok))
    m.fine.fit(iter([m.fine.cells(fine_ok)]), n=10, size=40, seed=0)
    m.fine.calibrate(None, m.fine(fine_ok))
    x = torch.rand(2, 3, 32, 32)
    f, fine, _ = m.features.tapped(x)
    pred = m(x)
    heat = m.nearest.fuse(m.reconstruction_map(f), m.nearest(f))
    up = lambda a: torch.nn.functional.interpolate(a[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    assert torch.allclose(pred.anomaly_map, up(m.fine.refine(heat, m.fine(fine))), atol=1e-5)
    assert torch.allclose(pred.score_map, up(heat), atol=1e-5)  # the score's map: without the fine term
    assert torch.allclose(pred.score, pred.score_map.flatten(1).amax(1))
    assert not torch.allclose(pred.anomaly_map, pred.score_map)
    again = build()
    again.load_state_dict(m.state_dict(), strict=True)  # the fine memory's length comes from the checkpoint
    assert again.fine.memory.shape == (40, 40) and torch.equal(again(x).anomaly_map, pred.anomaly_map)
