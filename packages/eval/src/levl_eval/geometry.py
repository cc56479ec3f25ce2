"""The image geometry a protocol extracts its features under (METHOD.md, "Linear probe").

The classification probes (linear, MLP, attentive; the ImageNet-9 background probe) see every
encoder's images through one geometry, `PAPER_PROBE`: shorter side resized to 256 (bicubic),
centre crop 224, normalised with that checkpoint's own mean/std. Probe numbers then compare
across checkpoints and with the paper whatever resize a checkpoint records (levl-train's is a
224 resize with no margin; another may be its training size).

`CHECKPOINT` is the checkpoint's own eval preprocessing, unchanged. Zero-shot, retrieval,
segmentation, depth and vlm use it: METHOD.md gives zero-shot and retrieval no geometry (CLIP's
zero-shot uses the model's own preprocessing), and the dense protocols state theirs separately
(224 input). The synthetic world uses it for every protocol: its images are stored at the
world's size (64 px for micro and tiny, 128 small, 224 medium; 32 in the tests) and its models
are trained at that size, so an upsampled 256/224 crop would measure the position-embedding
interpolation (the ViT has `dynamic_img_size`, so it would run) rather than the features. Each
result records the geometry it ran under in its `settings`.
"""

from __future__ import annotations

from dataclasses import dataclass

from levl_model.preprocess import Preprocess

SYNTH = "synth"  # the task dataset name of the synthetic world (levl_eval.tasks)


@dataclass(frozen=True)
class ImageGeometry:
    """Resize the shorter side to `resize_shorter` (`interpolation`), centre crop `crop`; the
    mean/std are always the checkpoint's. `crop` None keeps the checkpoint's whole geometry."""

    name: str
    resize_shorter: int | None = None
    crop: int | None = None
    interpolation: str | None = None

    def applied_to(self, preprocess: Preprocess) -> Preprocess:
        """The checkpoint's preprocessing with this geometry (its mean/std kept)."""
        if self.crop is None:
            return preprocess
        return Preprocess(size=self.crop, mean=preprocess.mean, std=preprocess.std,
                          interpolation=self.interpolation or preprocess.interpolation,
                          resize_shorter=self.resize_shorter)

    def describe(self) -> dict:
        """What a report records under a result's `settings.geometry`."""
        if self.crop is None:
            return {"name": self.name, "transform": "the checkpoint's own eval preprocessing "
                    "(size, resize, interpolation, mean/std: each encoder's `preprocess`)"}
        return {"name": self.name, "resize_shorter": self.resize_shorter,
                "interpolation": self.interpolation, "center_crop": self.crop,
                "mean_std": "the checkpoint's own (each encoder's `preprocess`)"}


PAPER_PROBE = ImageGeometry("paper", resize_shorter=256, crop=224, interpolation="bicubic")
CHECKPOINT = ImageGeometry("checkpoint")


def probe_geometry(dataset: str) -> ImageGeometry:
    """The probes' geometry on a task's dataset: the paper's on real datasets, the checkpoint's
    own on the synthetic world."""
    return CHECKPOINT if dataset == SYNTH else PAPER_PROBE
