"""The thesis' optional image enhancement (CLAHE on L of LAB, gamma 0.8, unsharp mask), from the
image rule's single source so the line scorer enhances exactly as training and evaluation do."""

from prefilter_qa_line.imagerule import enhance

__all__ = ["enhance"]
