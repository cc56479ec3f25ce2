"""A few segmentation examples (image, ground truth, prediction) kept in report.json, so the
report's example figure can be re-rendered from the JSON alone (`levl-eval report DIR`).

Arrays are stored as uint8 bytes, zlib-compressed and base64-encoded with their shape: a 64 px
synthetic-world example costs a few kB. The labels and predictions are the full frames the
protocol scores, at the labels' original resolution, so images are read untouched: an image and
its label map are stored at one size (the dataset readers check it).
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import torch
from torchvision import transforms as T

from levl_eval.data.batches import split_batches
from levl_eval.data.splits import EvalSplit
from levl_eval.geometry import rgb

EXAMPLE_COUNT = 3


def encode_uint8(array: np.ndarray | torch.Tensor) -> dict:
    """A uint8 array as {"shape", "zlib_base64"} (JSON-safe, compact)."""
    values = np.ascontiguousarray(np.asarray(array, dtype=np.uint8))
    return {"shape": list(values.shape),
            "zlib_base64": base64.b64encode(zlib.compress(values.tobytes(), 9)).decode("ascii")}


def decode_uint8(encoded: dict) -> np.ndarray:
    """The array `encode_uint8` stored."""
    raw = zlib.decompress(base64.b64decode(encoded["zlib_base64"]))
    return np.frombuffer(raw, dtype=np.uint8).reshape(encoded["shape"])


def example_images(split: EvalSplit, count: int) -> torch.Tensor:
    """The split's first `count` images as uint8 [B, H, W, 3], whole frames (no resize or crop)."""
    batch = next(iter(split_batches(split, T.Compose([T.Lambda(rgb), T.PILToTensor()]), batch_size=count)))
    return batch["image"].permute(0, 2, 3, 1)


def segmentation_examples(split: EvalSplit, masks_KHW: torch.Tensor, pred_KHW: torch.Tensor) -> dict:
    """report.json's `examples` of one encoder: the first test images, their labels, its predictions."""
    images = example_images(split, masks_KHW.shape[0])
    return {"images": [encode_uint8(image) for image in images],
            "ground_truth": [encode_uint8(mask) for mask in masks_KHW],
            "prediction": [encode_uint8(pred) for pred in pred_KHW]}
