"""Zero-shot prompt templates, in one place: the standard sets every zero-shot task runs, and the
default templates of the real classification datasets.

Every task is scored with the `STANDARD_SETS` side by side (METHOD.md: the single template
"a photo of a {}." and the 80 OpenAI ImageNet templates) and with the dataset's own templates
when those are another set. A dataset's own templates are CLIP's for it (openai/CLIP,
`data/prompts.md`), so its numbers compare with published ones: ImageNet's are the 80 OpenAI
templates, the fine-grained sets name their domain ("..., a type of aircraft."), scene sets use
SUN397's pair. A folder dataset's own `prompts.txt` (one template per line, each with `{}`)
replaces these (levl_eval.datasets.imagefolder); the synthetic world's are its manifest's
`labels.prompts`.
"""

from __future__ import annotations

from levl_eval.datasets.clip_imagenet import OPENAI_IMAGENET_TEMPLATES

SINGLE: tuple[str, ...] = ("a photo of a {}.",)

# name -> templates; the names key each task's `prompt_sets` in report.json
STANDARD_SETS: dict[str, tuple[str, ...]] = {"single": SINGLE, "openai80": OPENAI_IMAGENET_TEMPLATES}
OWN_SET = "dataset"  # the name of a dataset's own templates when they are no standard set

GENERIC: tuple[str, ...] = ("a photo of a {}.", "a photo of the {}.")

IMAGENET: tuple[str, ...] = OPENAI_IMAGENET_TEMPLATES

SCENES: tuple[str, ...] = GENERIC  # CLIP's SUN397 templates; used for Places365

AIRCRAFT: tuple[str, ...] = (
    "a photo of a {}, a type of aircraft.",
    "a photo of the {}, a type of aircraft.",
)

PETS: tuple[str, ...] = ("a photo of a {}, a type of pet.",)


def template_problem(template: str) -> str | None:
    """What keeps `template.format(name)` from naming the class, or None: zero-shot fills every
    template with str.format, so a second `{}` (IndexError), a `{word}` (KeyError) or a lone
    brace (ValueError) would otherwise fail deep inside the text encoding."""
    marker = "\x00"
    try:
        filled = template.format(marker)
    except (IndexError, KeyError, ValueError, AttributeError, TypeError):
        count = template.count("{}")
        return (f"has {count} {{}} placeholders, not one" if count > 1
                else "has a stray brace or a named field")
    return None if marker in filled else "has no {} placeholder"
