"""A trained model as one ONNX graph: uint8 images (N, S, S, 3) -> (score (N,), map (N, S, S)).

The graph holds everything after the image rule (decode + resize + optional enhancement, done
by the line scorer with the same code): the /255 scaling, the backbone's normalisation, the ROI,
the training statistics and the score rule. Exported with torch.onnx's dynamo exporter (the
legacy TorchScript exporter cannot export these models), opset 18, dynamic batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.fsutil import atomic_write

OPSET = 18
INPUT, OUTPUTS = "image", ("score", "map")
MAX_BATCH = 256


class LineGraph(nn.Module):
    """The model behind the line scorer's input contract."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image.permute(0, 3, 1, 2).float() / 255.0  # (N, 3, S, S) in [0, 1], as training
        pred = self.model(x)
        return pred.score, pred.anomaly_map  # (N,), (N, S, S)


def export_onnx(model: nn.Module, input_size: int, path: Path) -> Path:
    """Write the graph to `path` atomically (a temp file, then rename)."""
    graph = LineGraph(model).cpu().eval()
    example = torch.zeros(2, input_size, input_size, 3, dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)

    def write(tmp: Path) -> None:
        program = torch.onnx.export(graph, (example,), dynamo=True, input_names=[INPUT],
                                    output_names=list(OUTPUTS), dynamic_shapes={"image": {0: batch}},
                                    opset_version=OPSET, verbose=False)
        program.save(str(tmp))

    return atomic_write(Path(path), write)


@torch.inference_mode()
def torch_outputs(model: nn.Module, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scores (N,), maps (N, S, S)) of the torch model for uint8 images (N, S, S, 3)."""
    score, amap = LineGraph(model).cpu().eval()(torch.from_numpy(np.ascontiguousarray(images)))
    return score.float().numpy(), amap.float().numpy()


def onnx_outputs(path: Path, images: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The same from the exported graph with onnxruntime (CPU), as the line scorer runs it."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    score, amap = session.run(list(OUTPUTS), {INPUT: np.ascontiguousarray(images, dtype=np.uint8)})
    return np.asarray(score, np.float32), np.asarray(amap, np.float32)
