"""CLIP's ImageNet zero-shot metadata: the 80 OpenAI prompt templates and the 1000 curated class
names, as the field's published ImageNet zero-shot numbers use them.

Stored in `clip_imagenet.json` beside this module (copied from open_clip's
`zero_shot_metadata.py`, MIT; source and licence recorded in the file) rather than imported from
open_clip, which levl-eval does not depend on. `tests/eval/test_clip_imagenet.py` checks the copy
against the installed open_clip and regenerates it.

The curated names are in ImageNet-1k's index order (sorted wnids). As in CLIP, two names occur
twice ("missile", "sunglasses"): those class pairs get identical text and tie.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

METADATA_PATH = Path(__file__).with_name("clip_imagenet.json")


@cache
def metadata_document() -> dict:
    """The stored JSON document (source, licence, templates, class names)."""
    return json.loads(METADATA_PATH.read_text(encoding="utf-8"))


OPENAI_IMAGENET_TEMPLATES: tuple[str, ...] = tuple(metadata_document()["templates"])
IMAGENET_CLASSNAMES: tuple[str, ...] = tuple(metadata_document()["classnames"])
