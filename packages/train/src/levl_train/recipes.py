"""Named recipes: each is a function returning the full `TrainConfig` of one kind of run.

`smoke=True` shrinks a recipe to a few steps on a small batch without changing its shape, so
every recipe can be exercised end to end on a laptop before it is sent to a cluster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from levl_model.config import (
    HeadsConfig,
    ModelConfig,
    ObjectiveConfig,
    TextConfig,
    VisionConfig,
    model_config,
)
from levl_model.preprocess import CLIP_MEAN, CLIP_STD, Preprocess
from levl_train.config import DataConfig, DistConfig, OptimConfig, TrainConfig
from levl_train.errors import TrainError


def micro_synthetic(smoke: bool = False) -> TrainConfig:
    """The smallest real run, for tests: a 2-layer ViT/GPT-2 pair on the synthetic world.

    levl-data synth --out data --size micro
    levl-train run micro_synthetic --data data/train/manifest.json --out runs/micro
    torchrun --nproc_per_node=2 -m levl_train.cli run micro_synthetic \\
        --data data/train/manifest.json --out runs/micro2 --set engine=deepspeed
    """
    cfg = TrainConfig(
        recipe="micro_synthetic",
        model=model_config("micro", image_size=64, patch_size=8, embed_dim=64,
                           proj_hidden=256, pred_hidden=256),
        objective=ObjectiveConfig(name="levljepa", num_slices=256),
        preprocess=Preprocess(size=64, mean=CLIP_MEAN, std=CLIP_STD),
        data=DataConfig(batch_size=32, num_workers=0, shuffle_buffer=256),
        optim=OptimConfig(lr=1e-3, min_lr=1e-4, weight_decay=0.05, warmup_steps=5),
        dist=DistConfig(zero_stage=2),  # used with --set engine=deepspeed (2-rank CPU tests)
        steps=40,
        log_every=5,
        ckpt_every=20,
    )
    return _smoke(cfg, steps=6) if smoke else cfg


def tiny_synthetic(smoke: bool = False) -> TrainConfig:
    """The demo run: LeVLJEPA+ on the tiny synthetic world, ~9 min on 2 CPU cores.

    Sized by measurement (docs/small-scale.md): width-64 towers with 8-px patches (an 8x8 grid
    at 64 px). Two views of each image (DINO's colour jitter, as LeVLJEPA+'s reference code:
    hue within +-0.1 of the wheel; 20 % greyscale, crops of 70-100 %) and four local views
    (crops of 5-40 % at 32 px, four to a frame), pulled together by the multi-view term at
    weight 1. Over 3 seeds at 800 steps every headline metric clears the random encoder by more
    than its spread: zero-shot 24.5-28.2 % (random 11-12 %), segmentation mIoU 14.5-15.6
    (11.6-12.6), image->text R@1 1.7-2.3 % (0.1-0.2 %); the features read colour, size, the
    object count and the background better than a random encoder's, and shape only through the
    background it usually comes with. The hue jitter sets a trade: over the whole wheel (0.5)
    the embedding becomes hue-invariant and reads the background texture, which gives zero-shot
    69.7-72.6 % through the world's background-shape correlation, but no shape of its own
    (Mixed-Rand 2-3 %) and no colour, and R@1 stays within its seed spread. lr 1e-3 with 50
    warmup steps, lambda 0.02, 256 slices and the MSE prediction loss won or tied against
    lr 3e-3 / 3e-4, lambda 0.1, 1024 slices and the cosine loss.

    levl-data synth --out data --size tiny
    levl-train run tiny_synthetic --data data/train/manifest.json --out runs/tiny
    """
    cfg = TrainConfig(
        recipe="tiny_synthetic",
        model=model_config("micro", image_size=64, patch_size=8, embed_dim=64,
                           proj_hidden=256, pred_hidden=256),
        objective=ObjectiveConfig(name="levljepa", num_slices=256, lambda_multi=1.0),
        preprocess=Preprocess(size=64, mean=CLIP_MEAN, std=CLIP_STD),
        data=DataConfig(batch_size=128, num_workers=1, shuffle_buffer=2000, views=2,
                        crop_scale_min=0.7, hue_jitter=0.1, grayscale_p=0.2, local_views=4,
                        local_size=32),
        optim=OptimConfig(lr=1e-3, min_lr=1e-4, weight_decay=0.05, warmup_steps=50),
        steps=800,
        log_every=25,
        ckpt_every=400,
    )
    return _smoke(cfg, steps=10) if smoke else cfg


def small_custom(smoke: bool = False) -> TrainConfig:
    """LeVLJEPA on a user's own small image-caption set (`levl-data pack`), on a CPU in minutes.

    Towers 128 wide x 4 layers at 112 px with 16-px patches (a 7x7 grid), E = 64 with 512-wide
    heads, batch 128 (SIGReg's statistics need the rows), lr 1e-3 with 25 warmup steps, 300
    steps (~8 epochs of 5000 pairs). Chosen on the synthetic world (docs/small-scale.md); shown
    on the photo set, which the search never saw.

    levl-data pack --from my_pairs.csv --out data --image-size 128
    levl-train run small_custom --data data/manifest.json --out runs/mine
    """
    cfg = TrainConfig(
        recipe="small_custom",
        model=ModelConfig(VisionConfig(128, 4, 2, patch_size=16, image_size=112),
                          TextConfig(128, 4, 2),
                          HeadsConfig(embed_dim=64, proj_hidden=512, pred_hidden=512)),
        objective=ObjectiveConfig(name="levljepa", num_slices=256),
        preprocess=Preprocess(size=112, mean=CLIP_MEAN, std=CLIP_STD),
        data=DataConfig(batch_size=128, num_workers=1, shuffle_buffer=2000),
        optim=OptimConfig(lr=1e-3, min_lr=1e-4, weight_decay=0.05, warmup_steps=25),
        steps=300,
        log_every=10,
        ckpt_every=300,
    )
    return _smoke(cfg, steps=10) if smoke else cfg


def clip_parity(smoke: bool = False) -> TrainConfig:
    """InfoNCE set up as open_clip's trainer sets up CLIP, for comparing the two trainers
    (bench/parity.py, docs/parity.md): open_clip's init of both towers, bias-free linear
    projections, open_clip's augmentation (crop scale 0.9-1, no jitter), no gradient clipping,
    cosine to 0. Towers of ViT-Ti width at
    112 px, 6 layers; batch 64, lr 1e-3, wd 0.1, 25 warmup steps, 234 steps (3 epochs of 5000).

    levl-data photos --out photos
    levl-train run clip_parity --data photos/train/manifest.json --out runs/parity
    """
    cfg = TrainConfig(
        recipe="clip_parity",
        model=ModelConfig(VisionConfig(192, 6, 3, patch_size=16, image_size=112),
                          TextConfig(192, 6, 3),
                          HeadsConfig(embed_dim=256, projection="linear", predictors=False),
                          init="open_clip"),
        objective=ObjectiveConfig(name="infonce"),
        preprocess=Preprocess(size=112, mean=CLIP_MEAN, std=CLIP_STD),
        data=DataConfig(batch_size=64, num_workers=1, shuffle_buffer=2000, crop_scale_min=0.9,
                        color_jitter=False),
        optim=OptimConfig(lr=1e-3, min_lr=0.0, weight_decay=0.1, warmup_steps=25, grad_clip=0.0),
        steps=234,
        precision="fp32",
        log_every=5,
        ckpt_every=234,
    )
    return _smoke(cfg, steps=10) if smoke else cfg


def vit_b16_datacomp_l(smoke: bool = False) -> TrainConfig:
    """The paper's DataComp-L model (METHOD.md): ViT-B/16 + GPT-2, E=256, batch 4096, 200k steps.

    levl-train run vit_b16_datacomp_l --data /data/datacomp-l/manifest.json --out runs/b16
    """
    cfg = TrainConfig(
        recipe="vit_b16_datacomp_l",
        model=model_config("base", image_size=224, patch_size=16, embed_dim=256),
        # SIGReg per rank on the local batch (N = 4096 / ranks / grad_accum x grad_accum), as the
        # reference code computes it: on the paper's 16 x 256 that is N = 256, the paper's
        # effective weight. `global` would multiply it by the world size (x16 there).
        objective=ObjectiveConfig(name="levljepa", lambda_v=0.02, lambda_t=0.02,
                                  num_slices=4096, sigreg_scope="local"),
        preprocess=Preprocess(size=224, mean=CLIP_MEAN, std=CLIP_STD),
        data=DataConfig(batch_size=4096, num_workers=8, shuffle_buffer=10000),
        optim=OptimConfig(lr=2e-4, min_lr=2e-5, weight_decay=0.01, warmup_steps=1000,
                          schedule="cosine", grad_clip=1.0),
        # ZeRO-2: optimizer states and gradients sharded, parameters whole (ViT-B + GPT-2 fit
        # one GPU; stage 3's per-layer gathers would only add communication).
        engine="deepspeed",
        dist=DistConfig(zero_stage=2),
        steps=200_000,
        precision="bf16",
        log_every=50,
        ckpt_every=2000,
    )
    return epochs_end_at_checkpoints(_smoke(cfg, steps=4) if smoke else cfg)


def vit_b16_cc12m(smoke: bool = False) -> TrainConfig:
    """ViT-B/16 + GPT-2 on CC12M with the DataComp-L hyperparameters.

    The paper trains on DataComp-L; for CC12M (~10M pairs) we keep every hyperparameter and
    shorten the run to 100k steps (~410M samples, ~40 epochs) — our choice, not the paper's.

    levl-train run vit_b16_cc12m --data /data/cc12m/manifest.json --out runs/b16-cc12m
    """
    base = vit_b16_datacomp_l()
    cfg = dataclasses.replace(base, recipe="vit_b16_cc12m", steps=100_000)
    return epochs_end_at_checkpoints(_smoke(cfg, steps=4) if smoke else cfg)


def epochs_end_at_checkpoints(cfg: TrainConfig) -> TrainConfig:
    """An epoch of the resampled stream is one checkpoint interval of samples, so that every
    checkpoint falls on an epoch's end and a resume from it opens the next epoch afresh: no
    byte of the samples before the position is read again. With the manifest's size as the
    epoch (DataComp-L: 1.28B samples, ~80M a rank on 16) a resume would read its rank's share
    of the epoch so far (decoding none of it) before its first batch.

    The price: each epoch's end drops what its loader workers hold in their shuffle buffers,
    so a rank reads data.shuffle_buffer x data.num_workers raw samples more an epoch (B/16:
    80k on top of the 512k it trains on, ~16 % more reads, and the buffers' refill every 2000
    steps). Shards are drawn with replacement however long the epoch. The value is fixed here:
    `--set ckpt_every` or `--set data.batch_size` leave it behind (`submit` notes an epoch
    longer than an interval), and `--set data.sampling=passes` wants
    `--set data.epoch_samples=none` (one pass an epoch)."""
    return dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, epoch_samples=cfg.ckpt_every * cfg.data.batch_size))


def _smoke(cfg: TrainConfig, steps: int) -> TrainConfig:
    data = dataclasses.replace(cfg.data, batch_size=min(cfg.data.batch_size, 16), num_workers=0,
                               shuffle_buffer=64)
    optim = dataclasses.replace(cfg.optim, warmup_steps=min(cfg.optim.warmup_steps, 2))
    return dataclasses.replace(cfg, data=data, optim=optim, steps=steps, log_every=1,
                               ckpt_every=steps)


RECIPES: dict[str, Callable[..., TrainConfig]] = {
    fn.__name__: fn for fn in (micro_synthetic, tiny_synthetic, small_custom, clip_parity,
                               vit_b16_datacomp_l, vit_b16_cc12m)
}


def get_recipe(name: str, smoke: bool = False) -> TrainConfig:
    try:
        return RECIPES[name](smoke=smoke)
    except KeyError:
        raise TrainError(
            f"unknown recipe {name!r}; choose one of: {', '.join(sorted(RECIPES))}"
        ) from None
