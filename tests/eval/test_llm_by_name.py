"""`--llm ORG/NAME` resolves a Hugging Face hub name the way a user's machine does: through the
hub cache (`HF_HUB_CACHE`), here filled by the test in the cache's own layout and read with
`HF_HUB_OFFLINE=1`, so the code path a downloaded Llama or Qwen takes runs without a network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from levl_eval.testing.llm import tiny_llm

REVISION = "0" * 40
LOAD = ("import json, sys; from levl_eval.protocols.vlm.llm import load_llm; from levl_eval.errors import "
        "EvalError\ntry:\n    llm = load_llm(sys.argv[1])\nexcept EvalError as exc:\n"
        "    sys.exit(f'error: {exc}')\nprint(json.dumps(llm.describe()))")


def _cache_with(cache: Path, repo_id: str) -> None:
    """The hub cache's layout: models--ORG--NAME/{refs/main, snapshots/REVISION/...}."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    llm = tiny_llm(["what color is it", "red blue"], width=32)
    llm.model.save_pretrained(repo / "snapshots" / REVISION)
    llm.tokenizer.save_pretrained(repo / "snapshots" / REVISION)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)


def _load(name: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(cache.parent / "hf-home")}
    return subprocess.run([sys.executable, "-c", LOAD, name], env=env, capture_output=True,
                          text=True, timeout=300)


def test_hub_name_loads_from_the_hub_cache_offline(tmp_path):
    cache = tmp_path / "hub"
    _cache_with(cache, "levl-test/tiny-llama")
    loaded = _load("levl-test/tiny-llama", cache)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    described = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert described["source"] == "from_pretrained:levl-test/tiny-llama"
    assert described["width"] == 32 and described["name"] == "levl-test/tiny-llama"

    missing = _load("levl-test/not-downloaded", cache)
    assert missing.returncode == 1
    line = missing.stderr.strip().splitlines()[-1]
    assert line.startswith("error: --llm levl-test/not-downloaded: cannot load it"), line
    assert "cached on this machine" in line
