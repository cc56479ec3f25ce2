"""build_loader: exactly-once eval order, rank/worker splits, seeded shuffles, skip-and-count."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from torchvision.transforms import RandomResizedCrop

from levl_data.errors import DataError
from levl_data.loader import POSITION_KEY, build_loader
from levl_data.testing import COLORS, bad_sample_indices, make_tiny_shards
from levl_data.writer import ShardSetWriter

EVAL = {"shuffle_buffer": 0, "drop_last": False}


def _keys(loader) -> list[str]:
    return [key for batch in loader for key in batch["key"]]


def _skipped(loader) -> tuple[list[str], Counter]:
    keys, skipped = [], Counter()
    for batch in loader:
        keys += batch["key"]
        skipped.update(batch["skipped"])
    return keys, skipped


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_order_mode_yields_every_sample_once_in_stored_order(tiny_manifest, to_tensor):
    loader = build_loader(tiny_manifest, batch_size=5, image_transform=to_tensor, **EVAL)
    batches = list(loader)
    assert [len(batch["key"]) for batch in batches] == [5, 5, 5, 1]
    assert [key for batch in batches for key in batch["key"]] == [f"{i:06d}" for i in range(16)]
    first = batches[0]
    assert first["image"].shape == (5, 3, 32, 32) and first["image"].dtype == torch.float32
    assert first["skipped"] == {}
    names = list(COLORS)
    for caption, meta in zip(first["caption"], first["meta"], strict=True):
        assert caption.split()[1] == names[meta["label"]]  # caption and label travel together
    red = first["image"][0].mean(dim=(1, 2))  # sample 0 is a solid red square
    assert red[0] > 0.7 and red[1] < 0.3 and red[2] < 0.3


def test_two_workers_yield_every_sample_exactly_once(many_shards_manifest, to_tensor):
    loader = build_loader(
        many_shards_manifest, batch_size=3, image_transform=to_tensor, num_workers=2, **EVAL
    )
    keys = _keys(loader)
    assert sorted(keys) == [f"{i:06d}" for i in range(40)]
    assert keys == _keys(loader)  # and in a reproducible order


def test_ranks_get_disjoint_shards_that_cover_the_set(many_shards_manifest, to_tensor):
    per_rank = [
        _keys(
            build_loader(
                many_shards_manifest,
                batch_size=4,
                image_transform=to_tensor,
                rank=rank,
                world_size=2,
                **EVAL,
            )
        )
        for rank in (0, 1)
    ]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == [f"{i:06d}" for i in range(40)]
    assert len(per_rank[0]) == len(per_rank[1]) == 20


def test_too_few_shards_for_the_ranks_is_a_data_error(tiny_manifest, to_tensor):
    with pytest.raises(DataError, match="2 shard"):
        build_loader(tiny_manifest, batch_size=4, image_transform=to_tensor, rank=2, world_size=3)


def test_shuffle_is_deterministic_for_a_seed_and_differs_across_seeds(
    many_shards_manifest, to_tensor
):
    def order(seed: int) -> list[str]:
        loader = build_loader(
            many_shards_manifest,
            batch_size=4,
            image_transform=to_tensor,
            shuffle_buffer=16,
            seed=seed,
            drop_last=False,
        )
        return _keys(loader)

    first = order(1)
    assert first == order(1)
    assert first != order(2)
    assert first != sorted(first) and sorted(first) == sorted(order(2))


def test_resample_is_an_endless_deterministic_stream(tiny_manifest, to_tensor):
    def take(seed: int, batches: int = 6) -> list[str]:
        loader = build_loader(
            tiny_manifest, batch_size=4, image_transform=to_tensor, resample=True, seed=seed
        )
        stream = iter(loader)
        return [key for _ in range(batches) for key in next(stream)["key"]]

    keys = take(0)
    assert len(keys) == 24 > 16  # more than one pass over 16 samples
    assert keys == take(0)
    assert keys != take(1)


def test_bad_images_are_skipped_and_counted(tmp_path, to_tensor):
    path = make_tiny_shards(tmp_path / "set", n=16, bad=2)
    loader = build_loader(
        path, batch_size=4, image_transform=to_tensor, max_failure_rate=0.5, **EVAL
    )
    keys, skipped = _skipped(loader)
    bad = {f"{i:06d}" for i in bad_sample_indices(16, 2)}
    assert skipped == Counter({"undecodable_image": 2})
    assert sorted(keys) == sorted({f"{i:06d}" for i in range(16)} - bad)


def test_empty_captions_and_missing_members_are_skipped_by_reason(tmp_path, to_tensor):
    good = make_tiny_shards(tmp_path / "src", n=1)
    jpeg = read_first_jpeg(good)
    with ShardSetWriter(tmp_path / "set", samples_per_shard=8) as writer:
        writer.write({"__key__": "ok1", "jpg": jpeg, "txt": "a red square"})
        writer.write({"__key__": "blank", "jpg": jpeg, "txt": "   "})
        writer.write({"__key__": "nocaption", "jpg": jpeg, "json": {"label": 0}})
        writer.write({"__key__": "noimage", "txt": "a red square"})
        writer.write({"__key__": "ok2", "jpg": jpeg, "txt": "a red square"})
        writer.write({"__key__": "lastblank", "jpg": jpeg, "txt": ""})  # after the last batch's
        path = writer.finish(
            name="mixed",
            split="train",
            source={"kind": "custom", "metadata": [], "subset": {"rule": "all", "sha256": None}},
            image={"policy": "fixed", "size": 32, "encoding": "jpeg"},
        )
    loader = build_loader(
        path, batch_size=8, image_transform=to_tensor, max_failure_rate=1.0, **EVAL
    )
    (batch,) = list(loader)
    assert batch["key"] == ["ok1", "ok2"]
    assert batch["meta"] == [{}, {}]  # no json member: {} rather than a skip
    assert batch["skipped"] == {"empty_caption": 2, "missing_member": 2}


def read_first_jpeg(manifest: Path) -> bytes:
    import tarfile

    with tarfile.open(manifest.parent / "shard-000000.tar") as tar:
        return tar.extractfile("000000.jpg").read()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_failure_rate_above_threshold_raises_naming_the_manifest(tmp_path, to_tensor, num_workers):
    path = make_tiny_shards(tmp_path / "set", n=128, bad=32, samples_per_shard=16)
    loader = build_loader(
        path, batch_size=8, image_transform=to_tensor, num_workers=num_workers, **EVAL
    )
    with pytest.raises(DataError) as caught:
        _keys(loader)
    message = str(caught.value)
    assert str(path) in message and "max_failure_rate=0.1" in message
    assert "\n" not in message


def test_failure_rate_below_threshold_runs_to_the_end(tmp_path, to_tensor):
    path = make_tiny_shards(tmp_path / "set", n=64, bad=3)
    loader = build_loader(path, batch_size=8, image_transform=to_tensor, **EVAL)
    keys, skipped = _skipped(loader)
    assert len(keys) == 61 and skipped["undecodable_image"] == 3


def test_extra_members_are_decoded_transformed_and_stacked(tmp_path, to_tensor):
    jpeg = read_first_jpeg(make_tiny_shards(tmp_path / "src", n=1))
    with ShardSetWriter(tmp_path / "set", samples_per_shard=8) as writer:
        for index in range(3):
            mask = np.full((32, 32), index, dtype=np.uint8)
            writer.write(
                {
                    "__key__": f"s{index}",
                    "jpg": jpeg,
                    "txt": "a red square",
                    "mask.png": _png(mask),
                    "mixed_same.jpg": jpeg,
                }
            )
        path = writer.finish(
            name="extras",
            split="eval",
            source={"kind": "custom", "metadata": [], "subset": {"rule": "all", "sha256": None}},
            image={"policy": "fixed", "size": 32, "encoding": "jpeg"},
        )
    loader = build_loader(
        path,
        batch_size=3,
        image_transform=to_tensor,
        extra_members=["mask.png", "mixed_same.jpg"],
        extra_transforms={"mask.png": lambda image: torch.from_numpy(np.array(image)).long()},
        **EVAL,
    )
    (batch,) = list(loader)
    assert batch["mask_png"].shape == (3, 32, 32)
    assert batch["mask_png"][:, 0, 0].tolist() == [0, 1, 2]  # PNG mode kept: class ids intact
    assert torch.equal(batch["mixed_same_jpg"], batch["image"])
    with pytest.raises(DataError, match="no extra member 'depth.png'"):
        build_loader(path, batch_size=3, image_transform=to_tensor, extra_members=["depth.png"])


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda content: content[:3000], "holds 1 samples, the manifest says 8"),
        (lambda content: b"\x00garbage" * 400, "is unreadable"),
        # still a valid tar of the same 8 samples, just not the bytes the manifest hashed:
        # a caption edited in place, and zero blocks appended after the end of the archive
        (lambda content: content.replace(b"a red square", b"a red sphere", 1), "has sha256"),
        (lambda content: content + bytes(10240), "(changed after the manifest was written)"),
    ],
)
@pytest.mark.parametrize("num_workers", [0, 2])
def test_damaged_shard_is_a_data_error_naming_it(
    tmp_path, to_tensor, damage, expected, num_workers
):
    path = make_tiny_shards(tmp_path / "set", n=16)
    shard = path.parent / "shard-000001.tar"
    shard.write_bytes(damage(shard.read_bytes()))
    loader = build_loader(
        path, batch_size=4, image_transform=to_tensor, num_workers=num_workers, **EVAL
    )
    with pytest.raises(DataError) as caught:
        _keys(loader)
    message = str(caught.value)
    assert f"shard {shard} " in message and expected in message and "\n" not in message


@pytest.mark.parametrize(
    "options",
    [{"batch_size": 0}, {"rank": 1}, {"max_failure_rate": 2.0}, {"shuffle_buffer": -1}],
)
def test_bad_options_are_value_errors(tiny_manifest, to_tensor, options):
    with pytest.raises(ValueError):
        build_loader(tiny_manifest, image_transform=to_tensor, **{"batch_size": 4, **options})


def test_a_resampled_shard_is_hashed_on_its_first_whole_read_only(tmp_path, to_tensor,
                                                                   monkeypatch):
    """Resampling reads a shard again and again: only the first whole read pays for sha256."""
    import levl_data.loader as loader_module

    opened = []

    class CountingReader(loader_module._HashingReader):
        def __init__(self, stream):
            opened.append(stream)
            super().__init__(stream)

    monkeypatch.setattr(loader_module, "_HashingReader", CountingReader)
    path = make_tiny_shards(tmp_path / "one", n=8, samples_per_shard=8)  # one shard
    loader = build_loader(path, batch_size=4, image_transform=to_tensor, resample=True,
                          shuffle_buffer=0)
    batches = iter(loader)
    keys = [key for _ in range(6) for key in next(batches)["key"]]  # three passes over it
    assert len(keys) == 24 and len(set(keys)) == 8
    assert len(opened) == 1


def crop_box(image: PIL.Image.Image) -> torch.Tensor:
    """The box RandomResizedCrop draws from the global torch RNG: augmentation made visible."""
    return torch.tensor(RandomResizedCrop.get_params(image, [0.2, 1.0], [3 / 4, 4 / 3]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_ranks_and_workers_draw_their_own_augmentations_and_a_rerun_the_same(
        tmp_path, num_workers):
    """One shard for two ranks: both resample it in stored order, so batch i holds the same
    samples on each rank (and, with two workers, batches 0 and 1 the same samples too)."""
    path = make_tiny_shards(tmp_path / "one", n=8, samples_per_shard=8)

    def draws(rank: int) -> list[tuple[list[str], torch.Tensor]]:
        loader = build_loader(path, batch_size=4, image_transform=crop_box, resample=True,
                              shuffle_buffer=0, rank=rank, world_size=2, num_workers=num_workers)
        stream = iter(loader)
        return [(batch["key"], batch["image"]) for batch in (next(stream) for _ in range(4))]

    rank0, rank1 = draws(0), draws(1)
    assert [keys for keys, _ in rank0] == [keys for keys, _ in rank1]
    assert all(not torch.equal(a, b) for (_, a), (_, b) in zip(rank0, rank1, strict=True))
    rerun = draws(0)
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rank0, rerun, strict=True))
    if num_workers == 2:  # worker 1's batch 1 holds worker 0's batch 0 samples
        assert rank0[0][0] == rank0[1][0] and not torch.equal(rank0[0][1], rank0[1][1])


def test_the_loader_leaves_the_trainers_torch_rng_alone(tiny_manifest):
    """With no workers the loader augments in the trainer's process: its draws must not move
    the RNG that model init and dropout use (nor depend on it)."""
    before = torch.get_rng_state()
    loader = build_loader(tiny_manifest, batch_size=4, image_transform=crop_box)
    first = [batch["image"] for batch in loader]
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(12345)
    again = [batch["image"] for batch in loader]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    torch.set_rng_state(before)


def test_a_resumed_loader_skips_without_decoding_and_counts_bad_samples_in_its_position(
        tmp_path):
    """Bad samples before the position are read past like good ones: the resumed loader
    gives the uninterrupted one's batches."""
    path = make_tiny_shards(tmp_path / "bad", n=32, bad=4)
    options = {"batch_size": 4, "image_transform": crop_box, "max_failure_rate": 0.5,
               "num_workers": 2, "seed": 3}
    batches = list(build_loader(path, **options))
    taken = batches[:3]
    samples = [max((b[POSITION_KEY]["samples"] for b in taken if b[POSITION_KEY]["worker"] == w),
                   default=0) for w in range(2)]
    # the position counts raw samples: more than the batches gave, so bad ones lie before it
    assert sum(samples) > sum(len(b["key"]) for b in taken)
    resumed = list(build_loader(path, **options, resume_samples=samples,
                                first_worker=(taken[-1][POSITION_KEY]["worker"] + 1) % 2))
    assert [b["key"] for b in resumed] == [b["key"] for b in batches[3:]]
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(resumed, batches[3:],
                                                                   strict=True))


def test_bad_samples_are_counted_once_across_a_resume_at_any_batch(tmp_path):
    """A batch counts the bad samples before its position only (the batcher reads ahead), so
    what a run counted up to a position plus what its resumed loader counts is what the
    uninterrupted loader counted: a resumed run's skip totals stay exact."""
    path = make_tiny_shards(tmp_path / "bad", n=40, bad=8)
    options = {"batch_size": 4, "image_transform": crop_box, "max_failure_rate": 0.5, "seed": 5,
               "drop_last": False}
    batches = list(build_loader(path, **options))
    whole = sum((Counter(b["skipped"]) for b in batches), Counter())
    assert whole == {"undecodable_image": 8}  # drop_last=False: the stream's end counts all
    for k in range(1, len(batches)):
        before = sum((Counter(b["skipped"]) for b in batches[:k]), Counter())
        resumed = build_loader(path, **options,
                               resume_samples=[batches[k - 1][POSITION_KEY]["samples"]])
        after = sum((Counter(b["skipped"]) for b in resumed), Counter())
        assert before + after == whole, k
