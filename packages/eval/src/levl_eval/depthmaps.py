"""Depth maps as the depth protocol reads them: 16-bit PNGs in millimetres -> float metres.

NYU Depth v2 (and the BTS / depth-toolbox exports of it) stores depth as single-channel 16-bit
PNGs in millimetres with 0 where the sensor gave nothing. A map is read as float32 metres and
sent through the same geometry as its image (resize shorter side, centre crop) with nearest
interpolation, so depth pixel (y, x) sits under image pixel (y, x) and no depth is invented by
blending a valid pixel with an invalid 0.

Eigen's evaluation crop (rows 45..470, columns 41..600 of the 640x480 frame; Eigen et al. 2014,
as in BTS, AdaBins and DINOv2) drops the border where the RGB frame is white padding. For
another frame size the same fractions of the frame are kept.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import PIL.Image
import torch

# PIL modes a 16-bit single-channel PNG opens as (Pillow versions differ); "I" is 32-bit int.
DEPTH_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
MILLIMETRES_PER_METRE = 1000.0
EIGEN_FRAME_HW = (480, 640)
EIGEN_CROP_ROWS, EIGEN_CROP_COLS = (45, 471), (41, 601)  # [start, stop) in the 640x480 frame


def is_depth_mode(mode: str) -> bool:
    """Whether a PIL mode can hold 16-bit millimetre depth (8-bit or RGB maps cannot)."""
    return mode in DEPTH_MODES


def eigen_crop_mask(height: int, width: int) -> np.ndarray:
    """[H, W] bool, True inside Eigen's crop scaled from the 640x480 frame to this size."""
    scale_y, scale_x = height / EIGEN_FRAME_HW[0], width / EIGEN_FRAME_HW[1]
    top, bottom = (round(r * scale_y) for r in EIGEN_CROP_ROWS)
    left, right = (round(c * scale_x) for c in EIGEN_CROP_COLS)
    keep_HW = np.zeros((height, width), dtype=bool)
    keep_HW[top:bottom, left:right] = True
    return keep_HW


def depth_metres(depth_map: PIL.Image.Image, eigen_crop: bool) -> np.ndarray:
    """[H, W] float32 metres of a 16-bit millimetre map; 0 stays 0 (invalid)."""
    mode = getattr(depth_map, "mode", None)  # None: the file could not be decoded
    if mode is None or not is_depth_mode(mode):
        raise ValueError(f"depth map of PIL mode {mode}, not 16-bit")
    metres_HW = np.asarray(depth_map).astype(np.float32) / MILLIMETRES_PER_METRE
    if metres_HW.ndim != 2:
        raise ValueError("depth map is not single-channel")
    if eigen_crop:
        metres_HW[~eigen_crop_mask(*metres_HW.shape)] = 0.0
    return metres_HW


def depth_transform(
    geometry: Callable[[PIL.Image.Image], PIL.Image.Image], *, eigen_crop: bool
) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """PIL 16-bit depth map -> float32 [H, W] metres through `geometry` (nearest resize + crop).

    A map that is not 16-bit single-channel raises ValueError, which the sample reader counts
    as an undecodable mask rather than crashing the run.
    """

    def transform(depth_map: PIL.Image.Image) -> torch.Tensor:
        metres = PIL.Image.fromarray(depth_metres(depth_map, eigen_crop), mode="F")
        return torch.from_numpy(np.array(geometry(metres), dtype=np.float32))

    return transform
