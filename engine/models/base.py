"""The one prediction type of every model, and the region-of-interest handling they share.

The ROI is kept as a float mask (maps are multiplied by it) and as the flat indices of its
pixels (scores select them with `index_select`): no boolean indexing or data-dependent branch
at run time, so a model exports to ONNX as it runs in torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class Prediction:
    """What a model returns (anomalib style)."""

    score: torch.Tensor  # (B,) image anomaly score, higher = more anomalous
    anomaly_map: torch.Tensor  # (B, H, W) float32 at input size; 0 outside the ROI
    # (B, H, W) the map the score was taken from, when it is not `anomaly_map` (e.g. DFR's
    # heatmap = mean of the stages, score = the most unusual stage); None: the score comes
    # from `anomaly_map`. It explains a score whose heatmap looks blank.
    score_map: torch.Tensor | None = None


class AnomalyModel(nn.Module):
    """Base of the model families: optional ROI and the shared top-k / max scoring."""

    def __init__(self) -> None:
        super().__init__()
        # Not persistent: a checkpoint stores the ROI beside the state_dict, so any ROI loads.
        self.register_buffer("roi", None, persistent=False)  # (H, W) bool or None
        self.register_buffer("roi_index", None, persistent=False)  # (K,) flat indices of the ROI's pixels

    def set_roi(self, roi: torch.Tensor | np.ndarray | None) -> None:
        """Pixels outside `roi` (bool (H, W) at input size) are zeroed in maps and ignored by scores."""
        if roi is None:
            self.roi = self.roi_index = None
        else:
            roi = torch.as_tensor(np.asarray(roi, dtype=bool))
            if roi.ndim != 2 or not bool(roi.any()):
                raise ValueError(f"ROI must be a non-empty (H, W) mask, got shape {tuple(roi.shape)}")
            device = next((b.device for b in self.buffers() if b is not None), torch.device("cpu"))
            self.roi = roi.to(device)
            self.roi_index = torch.as_tensor(np.flatnonzero(roi.numpy()), device=device)
        self.on_roi_change()

    def on_roi_change(self) -> None:
        """Hook for models that precompute more from the ROI."""

    def check_roi(self, amap: torch.Tensor) -> None:
        if self.roi is not None and tuple(self.roi.shape) != tuple(amap.shape[-2:]):
            raise ValueError(f"ROI is {tuple(self.roi.shape)} but the anomaly map is {tuple(amap.shape[-2:])}")

    def apply_roi(self, amap: torch.Tensor) -> torch.Tensor:
        """Zero the map outside the ROI.  amap: (B, H, W)."""
        self.check_roi(amap)
        return amap if self.roi is None else amap * self.roi.to(amap.dtype)

    @staticmethod
    def topk_mean(amap: torch.Tensor, k: int, index: torch.Tensor | None) -> torch.Tensor:
        """Mean of the k largest values per image among the pixels at `index` (all when None).
        amap: (B, H, W) -> (B,)."""
        flat = amap.flatten(1)  # (B, H*W)
        if index is not None:
            flat = flat.index_select(1, index)
        k = max(1, min(int(k), flat.shape[1]))
        if k == 1:
            return flat.amax(dim=1)
        return flat.topk(k, dim=1).values.mean(dim=1)
