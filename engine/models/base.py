"""The one prediction type of every model, and the region-of-interest handling they share."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Prediction:
    """What a model returns in eval mode (anomalib style)."""

    score: torch.Tensor  # (B,) image anomaly score, higher = more anomalous
    anomaly_map: torch.Tensor  # (B, H, W) float32 at input size; 0 outside the ROI


class AnomalyModel(nn.Module):
    """Base of the model families: optional ROI and the shared top-k / max scoring."""

    def __init__(self) -> None:
        super().__init__()
        # Not persistent: a checkpoint stores the ROI beside the state_dict, so any ROI loads.
        self.register_buffer("roi", None, persistent=False)  # (H, W) bool or None

    def set_roi(self, roi: torch.Tensor | None) -> None:
        """Pixels outside `roi` (bool (H, W) at input size) are zeroed in maps and ignored by scores."""
        if roi is None:
            self.roi = None
            return
        roi = torch.as_tensor(roi).to(dtype=torch.bool)
        if roi.ndim != 2 or not bool(roi.any()):
            raise ValueError(f"ROI must be a non-empty (H, W) mask, got shape {tuple(roi.shape)}")
        device = next((b.device for b in self.buffers() if b is not None), torch.device("cpu"))
        self.roi = roi.to(device)

    def _valid(self, amap: torch.Tensor) -> torch.Tensor | None:
        """(H, W) bool of the pixels that count for the score, or None when all do."""
        if self.roi is None:
            return None
        if tuple(self.roi.shape) != tuple(amap.shape[-2:]):
            raise ValueError(f"ROI is {tuple(self.roi.shape)} but the anomaly map is {tuple(amap.shape[-2:])}")
        return self.roi.to(amap.device)

    def apply_roi(self, amap: torch.Tensor) -> torch.Tensor:
        """Zero the map outside the ROI.  amap: (B, H, W)."""
        valid = self._valid(amap)
        return amap if valid is None else amap * valid

    @staticmethod
    def topk_mean(amap: torch.Tensor, k: int, valid: torch.Tensor | None) -> torch.Tensor:
        """Mean of the k largest values per image among the valid pixels.  amap: (B, H, W) -> (B,)."""
        flat = amap.flatten(1)  # (B, H*W)
        if valid is not None:
            v = valid.flatten()
            flat = flat[:, v]
        k = max(1, min(int(k), flat.shape[1]))
        if k == 1:
            return flat.amax(dim=1)
        return flat.topk(k, dim=1).values.mean(dim=1)
