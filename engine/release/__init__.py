"""Releasing a trained run to the production line: the model as one ONNX graph (`graph`) and the
bundle folder around it — threshold, golden images, parity check against torch (`bundle`)."""
