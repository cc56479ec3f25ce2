"""levl-data convert --to ffcv: the .beton holds the samples the webdataset loader yields.

One conversion per module (ffcv's writer forks processes and its loader JIT-compiles with numba,
seconds each on a busy CPU); the tests read it back through levl's loader in several ways.
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from typer.testing import CliRunner

from levl_data.cli import app
from levl_data.errors import DataError
from levl_data.loader import build_loader
from levl_data.manifest import read_manifest, verify_manifest
from levl_data.position import POSITION_KEY
from levl_data.summary import histograms
from levl_data.testing import bad_sample_indices, make_tiny_shards

runner = CliRunner()
N, BAD = 16, 2
# numba's dispatcher finalizer raises KeyError when an ffcv Loader's compiled code is collected
# (ffcv 1.0.2 + numba 0.68); harmless, printed as "Exception ignored in ...".
pytestmark = [pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
              pytest.mark.usefixtures("collect_ffcv_loaders")]


def image_to_tensor(image: PIL.Image.Image) -> torch.Tensor:
    """HWC uint8 -> CHW float in [0, 1], no augmentation, so both paths are comparable."""
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1) / 255.0


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(webdataset manifest with 2 corrupt samples, its ffcv manifest) made by the CLI."""
    root = tmp_path_factory.mktemp("convert")
    source = make_tiny_shards(root / "wds", n=N, bad=BAD)
    out = root / "ffcv"
    result = runner.invoke(app, ["convert", str(source), "--to", "ffcv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return source, root / "ffcv" / "manifest.json"


def by_key(manifest: Path, **options) -> dict[str, dict]:
    loader = build_loader(manifest, batch_size=4, image_transform=image_to_tensor,
                          shuffle_buffer=0, drop_last=False, **options)
    samples = {}
    for batch in loader:
        for i, key in enumerate(batch["key"]):
            samples[key] = {"caption": batch["caption"][i], "meta": batch["meta"][i],
                            "image": batch["image"][i]}
    return samples


def test_ffcv_file_reads_back_the_same_samples_as_the_webdataset_shards(converted):
    source, target = converted
    from_tars, from_ffcv = by_key(source), by_key(target)
    assert len(from_tars) == N - BAD
    assert sorted(from_ffcv) == sorted(from_tars)
    for key, sample in from_tars.items():
        other = from_ffcv[key]
        assert other["caption"] == sample["caption"] and other["meta"] == sample["meta"]
        assert other["image"].shape == sample["image"].shape
        # re-encoded as JPEG at quality 95: close, not identical
        assert (other["image"] - sample["image"]).abs().mean() < 0.02


def test_ffcv_manifest_is_valid_and_records_its_source_and_skips(converted):
    source, target = converted
    manifest, origin = read_manifest(target), read_manifest(source)
    assert manifest.data["format"] == "ffcv" and manifest.shards[0].path == "data.beton"
    assert manifest.num_samples == N - BAD
    assert manifest.data["stats"] == {
        "attempted": N, "written": N - BAD, "failures": {"undecodable_image": BAD}
    }
    assert manifest.data["source"]["params"]["converted_from"]["fingerprint"] == origin.fingerprint
    assert manifest.labels == origin.labels
    assert verify_manifest(manifest) == []
    scanned = histograms(manifest, 5)  # `levl-data info`: captions via ffcv, sizes from metadata
    assert scanned["samples_scanned"] == 5 and scanned["image_shorter_side"]["32"] == 5
    captions = scanned["caption_chars"]  # "a red square" ... "a yellow gradient": 12-17 chars
    assert captions["8"] + captions["16"] == 5 and captions["8"] > 0
    dropped = {f"{index:06d}" for index in bad_sample_indices(N, BAD)}
    assert dropped.isdisjoint(by_key(target))


def test_ffcv_loader_splits_ranks_and_shuffles_by_seed(converted):
    _, target = converted
    ranks = [set(by_key(target, rank=r, world_size=2)) for r in range(2)]
    assert ranks[0].isdisjoint(ranks[1]) and len(ranks[0] | ranks[1]) == N - BAD

    def order(seed: int) -> list[str]:
        loader = build_loader(target, batch_size=N, image_transform=image_to_tensor,
                              shuffle_buffer=100, seed=seed, drop_last=False)
        return next(iter(loader))["key"]

    first, again, other = order(1), order(1), order(2)
    assert first == again
    assert first != other and sorted(first) == sorted(other)


def test_ffcv_image_pipeline_crops_with_ffcvs_own_decoder(converted):
    from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder

    _, target = converted
    loader = build_loader(target, batch_size=4, image_transform=image_to_tensor,
                          shuffle_buffer=0, ffcv_image_pipeline=[
                              RandomResizedCropRGBImageDecoder((16, 16))])
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == torch.uint8
    assert len(batch["caption"]) == 4 and batch["skipped"] == {}


def test_resample_streams_past_one_pass(converted):
    _, target = converted
    loader = build_loader(target, batch_size=4, image_transform=image_to_tensor,
                          shuffle_buffer=100, resample=True)
    stream = iter(loader)
    keys = [key for _ in range(2 * len(loader) + 1) for key in next(stream)["key"]]
    assert len(keys) == 4 * (2 * len(loader) + 1)
    del stream  # a consumer that stops early must not leave ffcv's prefetch thread running
    time.sleep(1.0)  # the thread checks its stop flag every 0.5 s
    assert not [t for t in threading.enumerate() if type(t).__name__ == "EpochIterator"]


def noise(image: PIL.Image.Image) -> torch.Tensor:
    """An augmentation that is nothing but its random draw (from torch's global RNG, where
    torchvision's transforms draw)."""
    return torch.rand(1)


def test_ffcv_augmentations_are_per_sample_per_rank_and_per_pass(converted):
    """Drawn from the trainer's RNG, every rank drew the same augmentation sequence (each rank
    seeds it alike) and the loader moved the trainer's RNG. Seeded by (seed, pass, key): ranks
    differ, a rerun agrees, a second pass draws anew, the trainer's RNG is left alone."""
    _, target = converted

    def draws(rank: int, seed: int = 0, passes: int = 1) -> dict[tuple[int, str], float]:
        torch.manual_seed(0)  # the trainer's seed, the same on every rank
        loader = build_loader(target, batch_size=2, image_transform=noise, shuffle_buffer=100,
                              seed=seed, rank=rank, world_size=2, resample=passes > 1)
        stream, seen = iter(loader), {}
        for step in range(passes * len(loader)):
            batch = next(stream)
            seen.update({(step // len(loader), key): float(value)
                         for key, value in zip(batch["key"], batch["image"], strict=True)})
        del stream
        return seen

    with torch.random.fork_rng(devices=[]):  # the draws reseed the global RNG
        rank0, rank1 = draws(0), draws(1)
        assert sorted(rank0.values()) != sorted(rank1.values())
        assert draws(0) == rank0  # a rerun
        assert torch.equal(torch.get_rng_state(), torch.manual_seed(0).get_state())
        assert draws(0, seed=1) != rank0
        two = draws(0, passes=2)
    both = {key for _, key in two if (0, key) in two and (1, key) in two}
    assert both and all(two[(0, key)] != two[(1, key)] for key in both)


@pytest.mark.parametrize("resample", [True, False])
def test_a_resumed_ffcv_loader_starts_at_its_position_and_reads_nothing_before_it(
        converted, resample):
    """Each batch says how many samples of its passes were taken; a loader given that count
    gives the batches the uninterrupted one gave next (the same order and augmentation draws,
    across a pass's end), and augments nothing before them, where a replay would."""
    _, target = converted
    calls = []

    def counted(image: PIL.Image.Image) -> torch.Tensor:
        calls.append(1)
        return noise(image)

    def loader(resume: int | None = None):
        return build_loader(target, batch_size=4, image_transform=counted, shuffle_buffer=100,
                            seed=3, resample=resample,
                            resume_samples=() if resume is None else (resume,))

    with torch.random.fork_rng(devices=[]):  # the draws reseed the global RNG
        per_pass = len(loader()) * 4  # 3 batches of the 14 samples
        whole = list(itertools.islice(iter(loader()), 3 * per_pass // 4 if resample else 3))
        for taken in (1, 3, 4) if resample else (1, 2):
            position = whole[taken - 1][POSITION_KEY]
            assert position == {"worker": 0, "samples": 4 * taken}
            calls.clear()
            resumed = list(itertools.islice(iter(loader(position["samples"])), 2))
            assert len(calls) == 4 * len(resumed)  # nothing before the position is read
            expected = whole[taken:taken + 2]
            assert [b["key"] for b in resumed] == [b["key"] for b in expected]
            assert all(torch.equal(mine["image"], theirs["image"])
                       for mine, theirs in zip(resumed, expected, strict=True))
        if not resample:
            assert list(loader(per_pass)) == []  # the pass was over
    with pytest.raises(DataError, match="resume position 3 is not a whole number of batches"):
        loader(3)  # no batch ends there: an edited position, not the run's


def test_an_ffcv_rank_with_less_than_one_batch_is_one_clear_error(converted):
    """Not an endless loop of empty passes (resample) or a stream that ends at once."""
    _, target = converted
    with pytest.raises(DataError, match="rank 1 gets 7 sample.*less than one batch of 8"):
        build_loader(target, batch_size=8, image_transform=image_to_tensor, rank=1,
                     world_size=2, resample=True)


def test_convert_of_a_bad_manifest_is_one_error_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps({"schema": "levl.shards/v1", "name": "x"}))
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", str(bad), "--to", "ffcv", "--out", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: manifest ")
    assert "missing required key" in lines[0]
    assert not out.exists()


def test_convert_refuses_an_ffcv_source_and_an_occupied_out_dir(converted, tmp_path):
    source, target = converted
    again = runner.invoke(app, ["convert", str(target), "--to", "ffcv", "--out", str(tmp_path)])
    assert again.exit_code == 2 and "format is ffcv" in again.output
    occupied = runner.invoke(
        app, ["convert", str(source), "--to", "ffcv", "--out", str(target.parent)]
    )
    assert occupied.exit_code == 2 and "already holds manifest.json" in occupied.output


def test_missing_ffcv_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    source = make_tiny_shards(tmp_path / "wds", n=4)
    monkeypatch.setitem(sys.modules, "ffcv", None)  # import ffcv -> ImportError
    with pytest.raises(DataError, match=r"levl-data\[ffcv\]"):
        from levl_data.convert import convert

        convert(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()
