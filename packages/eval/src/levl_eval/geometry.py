"""The image geometry a protocol extracts its features under (METHOD.md, "Linear probe").

The classification probes (linear, MLP, attentive; the ImageNet-9 background probe) see every
encoder's images through one geometry, `PAPER_PROBE`: shorter side resized to 256 (bicubic),
centre crop 224, normalised with that checkpoint's own mean/std. Probe numbers then compare
across checkpoints and with the paper whatever resize a checkpoint records (levl-train's is a
224 resize with no margin; another may be its training size).

`CHECKPOINT` is the checkpoint's own eval preprocessing, unchanged. Zero-shot, retrieval and
vlm use it: METHOD.md gives zero-shot and retrieval no geometry (CLIP's zero-shot uses the
model's own preprocessing). The synthetic world uses it for every probe: its images are stored
at the world's size (64 px for micro and tiny, 128 small, 224 medium; 32 in the tests) and its
models are trained at that size, so an upsampled 256/224 crop would measure the
position-embedding interpolation (the ViT has `dynamic_img_size`, so it would run) rather than
the features. Each result records the geometry it ran under in its `settings`.

`FULL_FRAME` is the dense protocols' (segmentation, depth), everywhere: the whole frame resized
to the checkpoint's size x size, no crop, so the (h, w) patch grid covers every pixel of the
label and its logits upsample onto the label's own frame (METHOD.md: "224 input", 196 tokens,
"evaluation upsamples logits bilinearly to the label resolution"). A centre crop would leave
the sides of a 4:3 frame unseen and stretch the crop's predictions over them. On an image
already square at the checkpoint's size (the synthetic world) it gives the checkpoint's own
pixels, unless the checkpoint records a resize margin for its crop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import PIL.Image
import torch
from torchvision import transforms as T

from levl_model.preprocess import INTERPOLATIONS, Preprocess, eval_transform

SYNTH = "synth"  # the task dataset name of the synthetic world (levl_eval.tasks)


@dataclass(frozen=True)
class ImageGeometry:
    """Resize the shorter side to `resize_shorter` (`interpolation`), centre crop `crop`; the
    mean/std are always the checkpoint's. `crop` None keeps the checkpoint's whole geometry;
    `full_frame` resizes the whole frame to the checkpoint's size x size instead (no crop)."""

    name: str
    resize_shorter: int | None = None
    crop: int | None = None
    interpolation: str | None = None
    full_frame: bool = False

    def applied_to(self, preprocess: Preprocess) -> Preprocess:
        """The checkpoint's preprocessing with this geometry (its mean/std kept); a full frame
        drops the resize margin, which only a crop would use."""
        if self.full_frame:
            return replace(preprocess, resize_shorter=None)
        if self.crop is None:
            return preprocess
        return Preprocess(size=self.crop, mean=preprocess.mean, std=preprocess.std,
                          interpolation=self.interpolation or preprocess.interpolation,
                          resize_shorter=self.resize_shorter)

    def describe(self) -> dict:
        """What a report records under a result's `settings.geometry`."""
        if self.full_frame:
            return {"name": self.name, "transform": "the whole frame resized to the checkpoint's "
                    "size x size (its interpolation), no crop: the patch grid covers every label pixel",
                    "mean_std": "the checkpoint's own (each encoder's `preprocess`)"}
        if self.crop is None:
            return {"name": self.name, "transform": "the checkpoint's own eval preprocessing "
                    "(size, resize, interpolation, mean/std: each encoder's `preprocess`)"}
        return {"name": self.name, "resize_shorter": self.resize_shorter,
                "interpolation": self.interpolation, "center_crop": self.crop,
                "mean_std": "the checkpoint's own (each encoder's `preprocess`)"}


PAPER_PROBE = ImageGeometry("paper", resize_shorter=256, crop=224, interpolation="bicubic")
CHECKPOINT = ImageGeometry("checkpoint")
FULL_FRAME = ImageGeometry("full-frame", full_frame=True)


def is_full_frame(geometry: ImageGeometry | None) -> bool:
    """Whether images go through `geometry` whole (None: the checkpoint's own, which crops)."""
    return geometry is not None and geometry.full_frame


def rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """Grey, palette or RGBA inputs as RGB, before any resize (a palette resizes only nearest)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def frame_resize(preprocess: Preprocess, interpolation: T.InterpolationMode) -> T.Resize:
    """The whole frame to the checkpoint's size x size (the aspect ratio is not kept)."""
    return T.Resize((preprocess.size, preprocess.size), interpolation=interpolation)


def image_transform(preprocess: Preprocess, full_frame: bool) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """The encoder's input: the checkpoint's eval transform, after a full-frame resize when asked
    (then without a resize margin, so its own resize and crop leave the square as it is)."""
    if not full_frame:
        return eval_transform(preprocess)
    squash = frame_resize(preprocess, INTERPOLATIONS[preprocess.interpolation])
    return T.Compose([T.Lambda(rgb), squash, eval_transform(replace(preprocess, resize_shorter=None))])


def probe_geometry(dataset: str) -> ImageGeometry:
    """The probes' geometry on a task's dataset: the paper's on real datasets, the checkpoint's
    own on the synthetic world."""
    return CHECKPOINT if dataset == SYNTH else PAPER_PROBE
