"""The one image rule: how every file a user gives us becomes pixels.

Import, training, evaluation, prediction, thumbnails and the line scorer all read images
through the same rule so that a model never sees pixels decoded differently from the ones it
was trained or judged on. Its single source is `prefilter_qa_line.imagerule` (the torch-free
line scorer's package, installed with the app); this module gives the engine its functions
with a file that cannot be used reported as `engine.errors.InputFileError` (a UserError).

The rule, in order: decode fully (no truncated files); refuse more than MAX_PIXELS pixels
(decompression bombs, $PREFILTER_QA_MAX_PIXELS); apply the EXIF orientation; convert to RGB
(16-bit scaled by the full range v/257, float clipped, alpha dropped); resize (stretch) to the
model input, INTER_AREA when shrinking both sides, else bilinear. Masks: any mode, 8-bit
grayscale, EXIF orientation applied, binarised at > 127.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from prefilter_qa_line import imagerule as rule
from prefilter_qa_line.imagerule import (
    IMAGE_EXTENSIONS,
    IMAGE_RULE,
    MAX_PIXELS_ENV,
    ImageInfo,
    ImageRuleError,
    exif_transpose,
    resize_image,
    resize_mask,
    sha256_file,
    to_gray8,
)

from engine.errors import InputFileError

__all__ = ["IMAGE_EXTENSIONS", "IMAGE_RULE", "MAX_PIXELS_ENV", "ImageInfo", "exif_transpose", "open_image",
           "probe_image", "read_bytes", "read_image", "read_mask", "resize_image", "resize_mask", "sha256_file",
           "to_gray8", "to_rgb"]

F = TypeVar("F", bound=Callable)


def _user_errors(fn: F) -> F:
    """The rule's function, raising InputFileError (path + reason) where it raised ImageRuleError."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return fn(*args, **kwargs)
        except ImageRuleError as exc:
            raise InputFileError(exc.path, exc.reason) from None

    return wrapper  # type: ignore[return-value]


read_bytes = _user_errors(rule.read_bytes)
open_image = _user_errors(rule.open_image)
to_rgb = _user_errors(rule.to_rgb)
probe_image = _user_errors(rule.probe_image)
read_image = _user_errors(rule.read_image)
read_mask = _user_errors(rule.read_mask)
