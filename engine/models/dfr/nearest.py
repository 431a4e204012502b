"""DFR's second heatmap term (`nearest_size`): how far each place is from the nearest OK feature.

The autoencoder reconstructs every map position through one bottleneck shared by all positions,
so a feature that is normal somewhere on the part (label print, juice, background) reconstructs
well wherever it appears: a defect made of such features — a wrong fill level, a missing or
displaced component, a large uneven area — leaves the reconstruction error low. Its distance to
the nearest feature of an OK part stays high wherever the combination itself is new.

The stage features are average-pooled to `grid` × `grid` cells; `size` cell vectors of the OK
training images form the memory: an even random share from each image, or (`nearest_pick`
"coreset") the cells that cover all of them best. The distance map is brought
back to the map size and added to the reconstruction heatmap, each put on one scale by OK images
the model was not fitted on (`calibrate`): heatmap = s(reconstruction) + weight · s(distance), where
s() takes off the term's median on OK positions and divides by the spread from there to its 99th
percentile ("tail", the default) or is the z-score ("std"). What the image score and a defect's
heatmap see is the top of each term, and the terms' tops differ: on juice the reconstruction's
top 1 % of OK positions reach z-scores above 3.2, the distance's above 1.9 only, so a defect seen by
the distance alone is lost among the reconstruction's OK peaks. The tail scale puts both terms' OK
tops at 1, from OK images alone (there the distance weighs 1.8x what the z-scores give it; on the
fabric, whose two terms' tails are alike, 0.95x).

The same search on a finer backbone stage (`fine_weight`; DFR's `fine` module) sharpens the
heatmap (`refine`): the deep stages see a thin scratch as a blob four times its width, so the
clean pixels beside it score as high as the scratch. The fine stage's scaled distance, weighted,
is added, at most the heatmap's own value there: where the heatmap is quiet the fine stage's own
texture noise cannot raise it, where it is high the places the fine stage also finds rise above
their neighbours. It changes the heatmap only, never the image score.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


class NearestOK(nn.Module):
    """Stage features (B, C, m, m) -> distance of each position to the nearest OK feature (B, m, m)."""

    def __init__(self, channels: int, map_size: int, grid: int, weight: float, scale: str = "tail") -> None:
        super().__init__()
        self.kernel, self.map_size, self.grid, self.weight, self.scale = map_size // grid, map_size, grid, weight, scale
        self.register_buffer("memory", torch.zeros(0, channels))  # (M, C) OK cell vectors; M set by `fit`
        # (reconstruction map, distance map) on OK images: centre and scale (names from the z-scores)
        self.register_buffer("calib_mean", torch.zeros(2))
        self.register_buffer("calib_std", torch.ones(2))
        self.region: torch.Tensor | None = None  # (m, m) bool map positions inside the ROI; from the checkpoint's ROI
        self.owner: torch.Tensor | None = None  # (M,) training image of each memory row, while training

    def cells(self, f: torch.Tensor) -> torch.Tensor:
        """(B, C, m, m) -> (B, g*g, C): the features of each grid cell."""
        return grid_cells(f, self.kernel)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """(B, C, m, m) -> (B, m, m)."""
        return self.distances(self.cells(f))

    def distances(self, c: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        """Cell vectors (B, P, C) -> distance map (B, m, m). `skip` (B,): the memory rows an image
        gave (`fit`'s image index) are left out — a training image's distance as an unseen one's."""
        mem = self.memory.to(c.dtype)
        # |c - m|² = |m|² - 2 c·m + |c|²: the last is the same for every m, added after the min
        d2 = torch.addmm((mem * mem).sum(-1), c.flatten(0, 1), mem.T, alpha=-2).unflatten(0, (-1, c.shape[1]))  # (B, P, M)
        if skip is not None:
            d2 = d2.masked_fill(self.owner[None, None, :] == skip[:, None, None], float("inf"))
        d2 = d2.amin(dim=-1) + (c * c).sum(-1)
        dist = d2.clamp_min(0).sqrt().view(-1, 1, self.grid, self.grid)
        if self.kernel == 1:
            return dist[:, 0]
        return F.interpolate(dist, size=(self.map_size, self.map_size), mode="bilinear", align_corners=False)[:, 0]

    def fuse(self, recon: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """The heatmap (B, m, m): reconstruction map and distance map on their OK scales, weighted, added."""
        z_recon = (recon - self.calib_mean[0]) / self.calib_std[0]
        return z_recon + self.weight * (dist - self.calib_mean[1]) / self.calib_std[1]

    def refine(self, heat: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
        """As the fine term: the heatmap (B, m, m) plus this distance map (B, m, m) on its OK scale,
        weighted, at most the heatmap's own value at each position."""
        return heat + torch.minimum(self.weight * (dist - self.calib_mean[1]) / self.calib_std[1], heat)

    @torch.no_grad()
    def fit(self, cells: Iterable[torch.Tensor], n: int, size: int, seed: int, pick: str = "even") -> None:
        """The memory from the n OK training images' cell vectors (batches (B, P, C)), among the cells
        inside the ROI: `pick` "even" draws an even share of `size` cells per image at random;
        "coreset" keeps the `size` cells that cover all of them best (greedy farthest-first), so a
        rare OK look is kept and the background repeated on every part is not kept hundreds of
        times. Remembers which image each row came from (`owner`: its place in the batches) for
        `distances(skip=...)`."""
        inside = self.inside
        allowed = torch.arange(self.grid**2) if inside is None else torch.nonzero(inside.cpu()).flatten()
        per = max(1, min(len(allowed), size // max(n, 1))) if pick == "even" else len(allowed)
        gen = torch.Generator().manual_seed(seed)
        rows = []
        for c in cells:
            choice = torch.stack([allowed[torch.randperm(len(allowed), generator=gen)[:per]] for _ in range(len(c))])
            rows.append(c.cpu().float().gather(1, choice[..., None].expand(-1, -1, c.shape[-1])).flatten(0, 1))
        memory = torch.cat(rows)
        owner = torch.arange(len(memory)) // per
        if pick == "coreset" and len(memory) > size:
            keep = farthest_first(memory, size, gen)
            memory, owner = memory[keep], owner[keep]
        self.memory = memory.contiguous().to(self.calib_mean.device)  # (M, C)
        self.owner = owner.to(self.memory.device)

    @torch.no_grad()
    def calibrate(self, recon: torch.Tensor | None, dist: torch.Tensor) -> None:
        """Both maps' centre and scale over the positions inside the ROI of OK images ((N, m, m) each;
        the fine term has no reconstruction map: None): median and 99th percentile less the median
        ("tail"), or mean and std ("std")."""
        for i, maps in enumerate((recon, dist)):
            if maps is None:
                continue
            maps = maps.double()
            values = (maps if self.region is None else maps[:, self.region.to(maps.device)]).flatten()
            if self.scale == "tail":
                centre = _quantile(values, 0.5)
                spread = _quantile(values, TAIL_QUANTILE) - centre
            else:
                centre = values.mean()
                spread = values.std() if values.numel() > 1 else values.new_tensor(0.0)
            self.calib_mean[i] = centre
            self.calib_std[i] = spread if spread > 1e-9 else 1.0  # no spread (one OK image): unscaled

    def set_region(self, inside: torch.Tensor | None) -> None:
        """(m, m) bool of the map positions inside the ROI (None: all): the memory is drawn from grid
        cells mostly inside it, the calibration looks at positions inside it."""
        self.region = inside

    @property
    def inside(self) -> torch.Tensor | None:
        """(g*g,) bool of the grid cells mostly inside the ROI (None: all, or none is)."""
        if self.region is None:
            return None
        inside = F.adaptive_avg_pool2d(self.region.float()[None, None], (self.grid, self.grid)).flatten() >= 0.5
        return inside if bool(inside.any()) else None

    def resize_for(self, state_dict: dict, prefix: str) -> None:
        """A checkpoint's memory has its own number of rows: take its shape before loading."""
        memory = state_dict.get(prefix + "memory")
        if memory is not None:
            self.memory = torch.zeros_like(memory, device=self.calib_mean.device)


def grid_cells(f: torch.Tensor, kernel: int) -> torch.Tensor:
    """(B, C, m, m) -> (B, (m/kernel)², C): the features average-pooled to kernel x kernel cells."""
    return F.avg_pool2d(f.float(), kernel).flatten(2).transpose(1, 2)


TAIL_QUANTILE = 0.99  # "tail" scale: the spread from the median to this quantile of OK positions


def _quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The q-quantile of a 1-D tensor (the lower of the two neighbours; torch.quantile is limited
    to 16M values, a calibration of thousands of images has more)."""
    return values.kthvalue(round(q * (len(values) - 1)) + 1).values


def farthest_first(x: torch.Tensor, k: int, gen: torch.Generator, dim: int = 64, block: int = 32) -> torch.Tensor:
    """Indices of k rows of x (N, C) picked greedily, each the row farthest from those picked so far
    (k-center coreset, as PatchCore), distances measured after a random projection to `dim`.

    Exact greedy, in rounds: the `block` rows farthest from the picks so far are candidates; they
    are picked among themselves in greedy order while each stays farther than every row outside
    them could be, then all rows' distances are updated at once (one matrix product a round)."""
    p = x @ (torch.randn(x.shape[1], dim, generator=gen) / dim**0.5) if x.shape[1] > dim else x
    sq = (p * p).sum(1)
    closest = torch.full((len(x),), float("inf"))
    picks = [torch.randint(len(x), (1,), generator=gen)]
    got = 1
    while True:
        new = picks[-1]
        d2 = sq[:, None] - 2 * (p @ p[new].T) + sq[new][None]  # (N, picks of this round)
        torch.minimum(closest, d2.amin(1), out=closest)
        if got >= k:
            return torch.cat(picks)[:k]
        far, cand = closest.topk(min(block + 1, len(x)))
        bar = float(far[block]) if len(far) > block else float("-inf")  # the farthest row outside the candidates
        far, cand = far[:block].clone(), cand[:block]
        between = sq[cand][:, None] - 2 * p[cand] @ p[cand].T + sq[cand][None]  # (block, block) among the candidates
        chosen = [int(far.argmax())]
        while got + len(chosen) < k:
            torch.minimum(far, between[chosen[-1]], out=far)
            j = int(far.argmax())
            if float(far[j]) < bar:
                break
            chosen.append(j)
        picks.append(cand[torch.tensor(chosen)])
        got += len(chosen)
