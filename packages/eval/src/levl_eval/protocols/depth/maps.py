"""Depth maps as the depth protocol reads them: 16-bit PNGs in millimetres -> float metres.

NYU Depth v2 (and the BTS / depth-toolbox exports of it) stores depth as single-channel 16-bit
PNGs in millimetres with 0 where the sensor gave nothing. A map is read as float32 metres and
either kept at its original resolution (the frame the depth protocol scores on) or sent through
the same geometry as its image with nearest interpolation (training targets), so depth pixel
(y, x) sits under image pixel (y, x) and no depth is invented by blending a valid pixel with an
invalid 0.

Eigen's evaluation crop (rows 45..470, columns 41..600 of the 640x480 frame; Eigen et al. 2014,
as in BTS, AdaBins and DINOv2) drops the border where the RGB frame is white padding. It is
applied to the original 640x480 map, before any geometry, in those absolute pixels: a map of
another size has no Eigen crop (the NYUv2 reader refuses one in the test list).
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
    """[480, 640] bool, True inside Eigen's crop; the crop is in the pixels of NYUv2's own frame,
    so a map of another size (a resized one) is refused rather than cropped by scaled rows."""
    if (height, width) != EIGEN_FRAME_HW:
        raise ValueError(f"depth map of {width}x{height}: Eigen's crop is defined on NYUv2's "
                         f"{EIGEN_FRAME_HW[1]}x{EIGEN_FRAME_HW[0]} frame")
    keep_HW = np.zeros(EIGEN_FRAME_HW, dtype=bool)
    keep_HW[slice(*EIGEN_CROP_ROWS), slice(*EIGEN_CROP_COLS)] = True
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
    """PIL 16-bit depth map -> float32 [H, W] metres, Eigen-cropped first when asked, then
    through `geometry` (a nearest resize and crop, or none: `levl_eval.data.batches.untouched`).

    A map that is not 16-bit single-channel raises ValueError, which the sample reader counts
    as an undecodable mask rather than crashing the run.
    """

    def transform(depth_map: PIL.Image.Image) -> torch.Tensor:
        metres = PIL.Image.fromarray(depth_metres(depth_map, eigen_crop), mode="F")
        return torch.from_numpy(np.array(geometry(metres), dtype=np.float32))

    return transform
