"""Run a bundle's ONNX graph on the CPU: onnxruntime (default) or OpenVINO (optional extra).

Both run float32 throughout, as the graph was exported: the golden parity tolerance of a
bundle (~1e-5 relative) is far below what reduced precision would change, and a threshold is
only meaningful on the numbers it was chosen on.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "openvino")


class BackendError(Exception):
    """The model cannot be loaded or does not have the bundle's input/output contract."""


class Backend(Protocol):
    name: str

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> score (N,) float32, map (N, S, S) float32."""
        ...


def make_backend(model: bytes, size: int, backend: str = "onnxruntime",
                 threads: int | None = None) -> Backend:
    """A loaded model checked against the contract: input `image`, outputs `score`, `map`."""
    if backend == "onnxruntime":
        return OrtBackend(model, size, threads)
    if backend == "openvino":
        return OpenVinoBackend(model, size, threads)
    raise BackendError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")


def _check_dims(what: str, dims: list, expected: list[int | None]) -> None:
    """Static dims must be the contract's; symbolic ones (N, or any) are accepted."""
    ok = len(dims) == len(expected) and all(
        e is None or not isinstance(d, int) or d in (e, -1)
        for d, e in zip(dims, expected, strict=True))
    if not ok:
        raise BackendError(f"model {what} has shape {dims}, the bundle contract needs {expected}")


class OrtBackend:
    """onnxruntime CPUExecutionProvider (float32 kernels only on the CPU provider)."""

    name = "onnxruntime"

    def __init__(self, model: bytes, size: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: warnings about unused initialisers are noise
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        try:
            self._sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # ort raises its own Fail/InvalidGraph types
            raise BackendError(f"onnxruntime cannot load model.onnx: {e}") from None
        ins = {i.name: i for i in self._sess.get_inputs()}
        outs = {o.name: o for o in self._sess.get_outputs()}
        if list(ins) != ["image"] or ins["image"].type != "tensor(uint8)":
            raise BackendError(f"model inputs are {[(i.name, i.type) for i in ins.values()]}, "
                               f"the bundle contract needs one uint8 input 'image'")
        _check_dims("input 'image'", list(ins["image"].shape), [None, size, size, 3])
        for name, dims in (("score", [None]), ("map", [None, size, size])):
            if name not in outs or outs[name].type != "tensor(float)":
                raise BackendError(f"model has no float32 output {name!r} "
                                   f"(outputs: {[(o.name, o.type) for o in outs.values()]})")
            _check_dims(f"output {name!r}", list(outs[name].shape), dims)

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        score, amap = self._sess.run(["score", "map"], {"image": images})
        return np.asarray(score, np.float32), np.asarray(amap, np.float32)


class OpenVinoBackend:
    """OpenVINO on the CPU, forced to float32 (it would otherwise pick bf16/f16 where the CPU
    supports them: INFERENCE_PRECISION_HINT = f32 keeps the exported numbers)."""

    name = "openvino"

    def __init__(self, model: bytes, size: int, threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise BackendError("backend 'openvino' asked for but not installed "
                               "(pip install 'prefilter-qa-line[openvino]')") from None
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32"}  # always float32
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            core = ov.Core()
            net = core.read_model(model=model)  # the verified bytes, not the file again
            self._compiled = core.compile_model(net, "CPU", config)
        except Exception as e:
            raise BackendError(f"OpenVINO cannot load model.onnx: {e}") from None
        names = [p.get_any_name() for p in self._compiled.inputs]
        if names != ["image"]:
            raise BackendError(f"model inputs are {names}, the bundle contract needs 'image'")
        try:
            self._score = self._compiled.output("score")
            self._map = self._compiled.output("map")
        except Exception:
            raise BackendError("model lacks the outputs 'score' and 'map'") from None
        _check_dims("input 'image'", _ov_dims(self._compiled.input("image")),
                    [None, size, size, 3])
        self._request = self._compiled.create_infer_request()

    def run(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self._request.infer({"image": images})
        return (np.array(out[self._score], np.float32), np.array(out[self._map], np.float32))


def _ov_dims(port: object) -> list:
    shape = port.get_partial_shape()  # type: ignore[attr-defined]
    return [d.get_length() if d.is_static else "?" for d in shape]
