"""A checkpoint is one dict {state_dict, config, epoch, metrics, roi, info}; loading rebuilds from config.

No weight file is needed at load time: for DFR the state_dict holds the (trimmed) backbone too,
so the backbone is built with random weights and then overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.config import AEConfig, DFRConfig, config_from_dict, config_to_dict
from engine.errors import InputFileError, UserError
from engine.fsutil import atomic_write

CHECKPOINT_NAME = "checkpoint.pt"


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; asking for CUDA without one is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("device=cuda was asked for but no CUDA device is available; use --set device=cpu")
    return torch.device(device)


def _roi_tensor(roi: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
    return None if roi is None else torch.as_tensor(np.asarray(roi, dtype=bool))


def save_checkpoint(path: Path, model: nn.Module, config: AEConfig | DFRConfig, epoch: int,
                    metrics: dict[str, Any] | None = None, roi: np.ndarray | torch.Tensor | None = None,
                    info: dict[str, Any] | None = None) -> Path:
    """Write atomically (temp file + rename): a full disk never leaves a half checkpoint."""
    obj = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config_to_dict(config),
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
        "roi": _roi_tensor(roi),
        "info": dict(info or {}),
    }
    return atomic_write(Path(path), lambda tmp: torch.save(obj, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict (tensors on CPU); only plain data is unpickled."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, ...
        raise InputFileError(path, f"cannot read checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict) or not {"state_dict", "config"} <= obj.keys():
        raise InputFileError(path, "not a prefilter-qa checkpoint (no state_dict/config)")
    return obj


def model_from_checkpoint(obj: dict[str, Any]) -> tuple[nn.Module, AEConfig | DFRConfig]:
    """Rebuild the model of a checkpoint dict from its config and load its state_dict strictly."""
    from engine.models import build_ae, build_dfr, build_features

    cfg = config_from_dict(obj["config"])
    sd = obj["state_dict"]
    from engine.models.backbones import FROM_CHECKPOINT

    if cfg.model == "ae":
        model = build_ae(cfg, weights=FROM_CHECKPOINT)
    else:
        latent = obj.get("info", {}).get("latent_dim") or sd["cae.encoder.6.weight"].shape[0]

        model = build_dfr(cfg, build_features(cfg, weights=FROM_CHECKPOINT), int(latent))
    model.load_state_dict(sd, strict=True)
    roi = obj.get("roi")
    model.set_roi(None if roi is None else torch.as_tensor(roi, dtype=torch.bool))
    return model.eval(), cfg


def load_model(checkpoint: Path, device: str = "auto") -> tuple[nn.Module, AEConfig | DFRConfig]:
    """(model in eval mode on `device` with its ROI set, config)."""
    model, cfg = model_from_checkpoint(load_checkpoint(checkpoint))
    dev = resolve_device(device)
    model = model.to(dev)
    if model.roi is not None:
        model.roi = model.roi.to(dev)
    return model.eval(), cfg
