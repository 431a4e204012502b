"""Config presets, help texts and `--set` parsing; the module must not import torch."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.config import (
    CONFIG_TYPES,
    PRESETS,
    AEConfig,
    DFRConfig,
    config_from_dict,
    config_to_dict,
    field_help,
    make_config,
    parse_overrides,
    score_rule,
)
from engine.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def test_presets_exist_and_belong_to_their_family() -> None:
    assert {"ae", "ae-512", "dfr", "dfr-128", "dfr-170"} <= PRESETS.keys()
    for name, preset in PRESETS.items():
        cfg = preset.config
        assert cfg.preset == name and cfg.model == preset.model
        assert isinstance(cfg, AEConfig if name.startswith("ae") else DFRConfig)
        assert make_config(preset.model, name) == cfg


def test_thesis_presets_are_literal() -> None:
    ae = PRESETS["ae-512"].config
    assert (ae.input_size, ae.epochs, ae.batch_size, ae.lr, ae.weight_decay, ae.optimizer) == \
        (512, 25, 16, 1e-3, 1e-5, "adamw")
    for name, m in (("dfr-128", 128), ("dfr-170", 170)):
        c = PRESETS[name].config
        assert (c.backbone, c.input_size, c.map_size, c.batch_size, c.lr, c.optimizer) == \
            ("tf_efficientnet_b6", 512, m, 4, 1e-3, "adam")
        assert c.stages == (0, 1, 2, 3, 4, 5) and c.pca_variance == 0.9 and c.aggregation == "ours"
        assert not c.feature_standardise and not c.residual_norm and c.score == "max"
        assert not (c.position_norm or c.stage_norm or c.image_median) and c.score_combine == "map"
    assert PRESETS["ae"].config.input_size == 256 and PRESETS["dfr"].config.backbone == "tf_efficientnet_lite0"


def test_each_setting_is_declared_once_with_help() -> None:
    for cls in (AEConfig, DFRConfig):
        helps = field_help(cls)
        assert helps and all(text.strip() for text in helps.values()), cls
    tree = ast.parse((ROOT / "engine" / "config.py").read_text())
    declared = [st.target.id for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and node.name in ("_Common", "AEConfig", "DFRConfig")
                for st in node.body if isinstance(st, ast.AnnAssign) and st.target.id != "FAMILY"]
    assert len(declared) == len(set(declared)), sorted(n for n in declared if declared.count(n) > 1)


def test_presets_list_only_what_they_change() -> None:
    for preset in PRESETS.values():
        defaults = CONFIG_TYPES[preset.model]()
        same = [k for k, v in preset.changes.items() if getattr(defaults, k) == v]
        assert not same, f"preset {preset.name} repeats defaults: {same}"


def test_readme_and_cli_help_carry_each_preset_description() -> None:
    readme = (ROOT / "README.md").read_text()
    out = subprocess.run([sys.executable, "-m", "engine.cli", "train", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for preset in PRESETS.values():
        assert preset.description in readme, preset.name
        assert " ".join(preset.description.rstrip(".").split()[:4]) in " ".join(out.split()), preset.name


def test_overrides_are_parsed_by_field_type() -> None:
    cfg = make_config("dfr", "dfr", {"epochs": "3", "lr": "5e-4", "feature_standardise": "false",
                                     "stages": "1,2,3", "latent_dim": "12", "score": "topk"})
    assert cfg.epochs == 3 and cfg.lr == 5e-4 and cfg.feature_standardise is False
    assert cfg.stages == (1, 2, 3) and cfg.latent_dim == 12 and cfg.score == "topk"
    assert make_config("dfr", overrides={"latent_dim": "none"}).latent_dim is None
    assert make_config("ae", overrides={"skip": "off"}).skip is False
    assert make_config("ae").preset == "ae" and make_config("dfr").preset == "dfr"


@pytest.mark.parametrize("model,preset,overrides,needle", [
    ("ae", None, {"nope": "1"}, "unknown key"),
    ("ae", None, {"epochs": "two"}, "epochs"),
    ("ae", None, {"skip": "maybe"}, "skip"),
    ("dfr", None, {"score": "mean"}, "score"),
    ("ae", None, {"input_size": "100"}, "divisible by 16"),
    ("dfr", None, {"map_size": "0"}, "map_size"),
    ("dfr", None, {"map_size": "40"}, "nearest_grid must divide map_size 40"),  # 16 cells of 2.5 positions
    ("dfr", None, {"nearest_weight": "0"}, "nearest_weight"),
    ("ae", "dfr", None, "belongs to model"),
    ("dfr", "ae-512", None, "belongs to model"),
    ("cnn", None, None, "unknown model"),
    ("ae", "ae-1024", None, "unknown preset"),
    ("dfr", None, {"model": "ae"}, "model"),
])
def test_bad_input_is_a_user_error(model, preset, overrides, needle) -> None:
    with pytest.raises(UserError, match=needle):
        make_config(model, preset, overrides)


def test_parse_overrides() -> None:
    assert parse_overrides(["a=1", "b = x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(UserError):
        parse_overrides(["novalue"])


def test_dict_round_trip_through_json() -> None:
    for preset in PRESETS.values():
        d = json.loads(json.dumps(config_to_dict(preset.config)))
        assert config_from_dict(d) == preset.config
    with pytest.raises(UserError):
        config_from_dict({"model": "dfr", "bogus": 1})


def test_importing_config_does_not_import_torch() -> None:
    code = "import sys, engine.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_score_rule_says_when_the_heatmap_peak_is_not_the_score() -> None:
    dfr = config_to_dict(PRESETS["dfr"].config)
    assert score_rule(dfr).startswith("Heatmap: the reconstruction error plus the distance to the nearest feature "
                                      "of an OK part")  # the nearest-feature term
    assert "sharpened where it is already high by a finer backbone stage" in score_rule(dfr)  # the fine term
    assert "Image score: the largest value of the heatmap before that sharpening plus how unusual the image is as a " \
           "whole" in score_rule(dfr)
    assert "averaged over the image, the more unusual of the two counting" in score_rule(dfr)  # whole_global
    assert "averaged" not in score_rule(dfr | {"whole_global": False})
    assert "sharpen" not in score_rule(dfr | {"fine_weight": 0})
    local = dfr | {"whole_grid": 0, "nearest_size": 0}
    assert score_rule(local) == "Image score: largest value of the heatmap."  # the stages' mean, both
    fine = local | {"score_combine": "max"}  # the most unusual stage
    assert "combined by their max" in score_rule(fine) and "its peak is not the score" in score_rule(fine)
    literal = config_to_dict(PRESETS["dfr-128"].config)
    assert score_rule(literal) == "Image score: largest value of the heatmap."
    ae = config_to_dict(PRESETS["ae"].config)
    assert score_rule(ae).startswith("Heatmap: where the reconstruction differs from the image in a pretrained "
                                     "network's features") and score_rule(ae).endswith("the largest value of the heatmap.")
    thesis = score_rule(ae | {"ae_map": "pixel", "topk_at_512": 1500})
    assert thesis == "Image score: the mean of the 375 largest values of the heatmap (the squared pixel error of " \
                     "the reconstruction)."  # 1500 at 512²
    assert score_rule(fine | {"image_rule": {"resize": "stretch"}}) == score_rule(fine)  # a run's stored config
    assert score_rule({"model": "cnn"}) == ""  # unreadable stored config: nothing to say
