"""The frozen backbone's stage outputs brought to one feature map (B, C, m, m).

timm's `forward_intermediates(..., extra_blocks=True)` taps every block stage (index 0 = stem,
i + 1 = blocks[i]); `prune_intermediate_layers` drops what follows the last stage used. Each
stage output is brought straight to the m × m map — adaptive average pooling when larger,
bilinear resizing when smaller ("ours"), or the thesis' way: upsample to the input size, then
average-pool ("thesis", slow) — then a local average, then the stages are concatenated.
An optional finer `fine_stage` is tapped in the same pass and brought to the map on its own
(`tapped`): DFR's heatmap sharpens with it, nothing else sees it. Optional `pooled_stages` are
tapped too and each average-pooled to a POOLED_GRID² grid: the whole-image term's single cell
(`global_stages`) is their mean over the image.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


POOLED_GRID = 8  # cells a side the pooled stages are brought to (Lite0's deepest stage at 256²: 8 x 8)


class Taps(NamedTuple):
    """What one backbone pass gives: the stages' map, the fine stage's map, the pooled stages' grid."""
    map: torch.Tensor  # (B, C, m, m)
    fine: torch.Tensor | None  # (B, c, m, m)
    pooled: torch.Tensor | None  # (B, P, POOLED_GRID, POOLED_GRID)


class StageFeatures(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (B, C, m, m), C = sum of the chosen stages' channels.

    Takes the backbone over: it is pruned in place after the last stage used.
    """

    def __init__(self, backbone: nn.Module, stages: tuple[int, ...], map_size: int,
                 aggregation: str = "ours", local_avg: int = 3, fine_stage: int | None = None,
                 pooled_stages: tuple[int, ...] = ()) -> None:
        super().__init__()
        if not hasattr(backbone, "blocks") or not hasattr(backbone, "forward_intermediates"):
            raise ValueError(f"backbone {type(backbone).__name__} is not a timm EfficientNet (no blocks / "
                             "forward_intermediates)")
        n = len(backbone.blocks)
        extra = (*(() if fine_stage is None else (fine_stage,)), *pooled_stages)
        bad = [s for s in (*stages, *extra) if not 0 <= s < n]
        if bad:
            raise ValueError(f"backbone has stages 0..{n - 1}; unknown stage(s) {bad}")
        self.stages, self.map_size = tuple(sorted(stages)), map_size
        self.aggregation, self.local_avg = aggregation, local_avg
        self.fine_stage, self.pooled_stages = fine_stage, tuple(sorted(pooled_stages))
        tapped = sorted({*self.stages, *extra})
        self.taps = [s + 1 for s in tapped]  # timm's extra_blocks indices
        backbone.prune_intermediate_layers(self.taps, prune_head=True, extra_blocks=True)
        # Channels-last (NHWC) weights and input: oneDNN / cuDNN run EfficientNet's convolutions
        # ~2x faster so (2-core CPU: 4 images at 256² 245 -> 119 ms); results equal up to rounding.
        self.backbone = backbone.to(memory_format=torch.channels_last)
        # channels as the blocks declare them (timm's feature_info of the block's output)
        self.channels = [self._stage_channels(backbone, s) for s in self.stages]
        self.fine_channels = 0 if fine_stage is None else self._stage_channels(backbone, fine_stage)
        self.pooled_channels = sum(self._stage_channels(backbone, s) for s in self.pooled_stages)
        mean = torch.tensor(getattr(backbone, "norm_mean", (0.485, 0.456, 0.406)), dtype=torch.float32)
        std = torch.tensor(getattr(backbone, "norm_std", (0.229, 0.224, 0.225)), dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        self.register_buffer("std", std.view(1, 3, 1, 1))
        self.weights_sha256 = getattr(backbone, "weights_sha256", None)
        self.weights_source = getattr(backbone, "weights_source", None)
        for p in self.parameters():
            p.requires_grad_(False)

    @staticmethod
    def _stage_channels(backbone: nn.Module, stage: int) -> int:
        return int(backbone.blocks[stage][-1].feature_info("bottleneck")["num_chs"])

    @property
    def out_channels(self) -> int:
        return sum(self.channels)

    def train(self, mode: bool = True) -> StageFeatures:
        return super().train(False)  # frozen: BatchNorm statistics stay the pretrained ones

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The raw outputs of the tapped stages (the fine one among them), at their own resolutions."""
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        return self.backbone.forward_intermediates(x, indices=self.taps,
                                                   intermediates_only=True, extra_blocks=True, stop_early=True)

    def _to_map(self, f: torch.Tensor, in_hw: tuple[int, int]) -> torch.Tensor:
        """(B, c, h, w) -> (B, c, m, m)."""
        m = self.map_size
        if self.aggregation == "thesis":
            f = F.interpolate(f, size=in_hw, mode="bilinear", align_corners=False)  # (B, c, H, W)
            f = F.adaptive_avg_pool2d(f, m)
        elif f.shape[-2] > m or f.shape[-1] > m:
            f = F.adaptive_avg_pool2d(f, m)
        elif f.shape[-2] < m or f.shape[-1] < m:
            f = F.interpolate(f, size=(m, m), mode="bilinear", align_corners=False)
        if self.local_avg > 1:
            k = self.local_avg
            f = F.avg_pool2d(f, k, stride=1, padding=k // 2, count_include_pad=False)
            f = f[..., :m, :m]  # even k pads one extra row/column
        return f

    def aggregate(self, outs: list[torch.Tensor], in_hw: tuple[int, int]) -> torch.Tensor:
        """Stage outputs -> (B, C, m, m): each brought to the map, then concatenated."""
        return torch.cat([self._to_map(f, in_hw) for f in outs], dim=1).float()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = self._by_stage(x)
        return self.aggregate([outs[s] for s in self.stages], (x.shape[-2], x.shape[-1]))  # (B, C, m, m)

    @torch.no_grad()
    def tapped(self, x: torch.Tensor) -> Taps:
        """(B, 3, H, W) -> the stages' map, the fine stage's map and the pooled stages' grid (None
        without a fine stage / pooled stages), from one backbone pass."""
        hw, outs = (x.shape[-2], x.shape[-1]), self._by_stage(x)
        fine = None if self.fine_stage is None else self._to_map(outs[self.fine_stage], hw).float()
        pooled = torch.cat([F.adaptive_avg_pool2d(outs[s], POOLED_GRID) for s in self.pooled_stages],
                           dim=1).float() if self.pooled_stages else None
        return Taps(self.aggregate([outs[s] for s in self.stages], hw), fine, pooled)

    def _by_stage(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """The tapped stages' raw outputs by stage index."""
        return dict(zip([t - 1 for t in self.taps], self.stage_outputs(x)))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args, **kwargs) -> None:
        """Checkpoints written before the backbone became a submodule held its layers directly."""
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix):]
            if rest.startswith(("conv_stem.", "bn1.", "blocks.")):
                state_dict[prefix + "backbone." + rest] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
