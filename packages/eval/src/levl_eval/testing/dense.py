"""Test helpers: tiny NYU Depth v2 and COCO-Stuff 164k trees in their standard layouts.

Both write real files (JPEG images, 16-bit depth PNGs, 8-bit stuffthingmaps) the readers in
`levl_eval.datasets` validate and the feature pipeline decodes, at a few pixels a side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from levl_eval.testing.worlds import write_image

NYU_TRAIN_SCENE, NYU_TEST_SCENE = "kitchen_0028b", "bathroom"
NYU_FRAME = (640, 480)  # (width, height) of every NYUv2 test map


def nyu_depth_mm(index: int, size: tuple[int, int]) -> np.ndarray:
    """[H, W] uint16 millimetres: a top-to-bottom ramp from 1 m to (2 + index) m, the first two
    rows 0 (no measurement)."""
    width, height = size
    ramp_H = np.linspace(1000, 2000 + 1000 * index, height)
    depth_HW = np.repeat(ramp_H[:, None], width, axis=1).astype(np.uint16)
    depth_HW[:2] = 0
    return depth_HW


def write_depth_png(path: Path, depth_mm_HW: np.ndarray) -> Path:
    """A single-channel 16-bit PNG (what NYUv2's sync_depth_*.png are), parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(depth_mm_HW.astype(np.uint16)).save(path)
    return path


def write_nyu_layout(root: Path, *, per_split: int = 3, size: tuple[int, int] = (32, 24),
                     test_size: tuple[int, int] = NYU_FRAME) -> Path:
    """root/nyu with nyu_train.txt (BTS style: leading '/') and nyu_test.txt (no slash), each
    listing per_split rgb/sync_depth pairs, of `size` (width, height) in train and of NYUv2's own
    640x480 frame in test (Eigen's crop is defined there); image i has grey 40 + 60 i."""
    base = root / "nyu"
    for split, scene, slash in (("train", NYU_TRAIN_SCENE, "/"), ("test", NYU_TEST_SCENE, "")):
        frame = test_size if split == "test" else size
        lines = []
        for i in range(per_split):
            rgb, depth = f"{scene}/rgb_{i:05d}.jpg", f"{scene}/sync_depth_{i:05d}.png"
            write_image(base / rgb, size=frame, value=40 + 60 * i)
            write_depth_png(base / depth, nyu_depth_mm(i, frame))
            lines.append(f"{slash}{rgb} {slash}{depth} 518.8579")
        (base / f"nyu_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_cocostuff_layout(root: Path, *, per_split: int = 2, size: tuple[int, int] = (32, 24),
                           mask_size: tuple[int, int] | None = None) -> Path:
    """root/coco_stuff164k; sample i's stuffthingmap holds, left to right: 0 (person), 11 (an
    unused thing id), 91 + i (stuff) and 255 (unlabeled) in four vertical bands."""
    base = root / "coco_stuff164k"
    width, height = mask_size or size
    for split in ("train2017", "val2017"):
        for i in range(per_split):
            stem = f"{i:012d}"
            write_image(base / "images" / split / f"{stem}.jpg", size=size, value=60 + 50 * i)
            values = np.full((height, width), 255, dtype=np.uint8)
            band = width // 4
            values[:, :band], values[:, band:2 * band], values[:, 2 * band:3 * band] = 0, 11, 91 + i
            mask = base / "annotations" / split / f"{stem}.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(values).save(mask)
    return root
