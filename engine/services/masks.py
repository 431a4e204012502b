"""Saving masks and regions of interest: a new file per version, recorded in the database.

A concurrent save of the same image (or ROI) since this edit was loaded is a ConflictError,
and the file written for the losing save is removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from db import datasets as dq
from db import masks as mq
from db.auth import Actor, Permission, require
from db.errors import StaleEditError
from engine.errors import ConflictError
from engine.intake.maskfiles import image_mask_dir, roi_dir, write_mask_file


def save_mask(
    session: Session, masks_root: Path, image_id: int, mask: np.ndarray | None, *,
    base_version: int | None, actor: Actor, source: str = "drawn",
) -> int:
    """Save an edited mask as a new version; None or an empty mask records "no defect".

    Raises ConflictError if someone saved this image's mask since `base_version` was loaded,
    PermissionDenied unless `actor` may annotate. Returns the new version number.
    """
    require(actor, Permission.ANNOTATE, f"save the mask of image {image_id}")  # before writing a file
    image = dq.get_image(session, image_id)
    path = sha = None
    pixels = 0
    if mask is not None and mask.any():
        if mask.shape != (image.height, image.width):
            raise ValueError(f"mask is {mask.shape[1]}×{mask.shape[0]} but image {image_id} "
                             f"is {image.width}×{image.height}")
        file, sha, pixels = write_mask_file(image_mask_dir(masks_root, image_id), mask)
        path = str(file)
    try:
        row = mq.add_mask_version(
            session, image_id, base_version=base_version, actor=actor, path=path, sha256=sha,
            pixels=pixels, source=source if pixels else "cleared",
        )
    except StaleEditError as exc:
        if path:
            Path(path).unlink(missing_ok=True)
        raise ConflictError(str(exc)) from exc
    return row.version


def save_roi(
    session: Session, masks_root: Path, dataset_id: int, roi: np.ndarray | None, *,
    base_version: int | None, actor: Actor,
) -> int:
    """Save the dataset's region of interest (None removes it) as a new version."""
    require(actor, Permission.ROI, f"change the region of interest of dataset {dataset_id}")
    path = sha = None
    height = width = None
    if roi is not None:
        if not roi.any():
            raise ValueError("the region of interest is empty: it would ignore every pixel")
        file, sha, _ = write_mask_file(roi_dir(masks_root, dataset_id), roi)
        path, (height, width) = str(file), roi.shape
    try:
        row = mq.add_roi_version(session, dataset_id, base_version=base_version, actor=actor,
                                 path=path, sha256=sha, width=width, height=height)
    except StaleEditError as exc:
        if path:
            Path(path).unlink(missing_ok=True)
        raise ConflictError(str(exc)) from exc
    return row.version
