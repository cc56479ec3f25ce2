"""Default zero-shot prompt templates of the real classification datasets, in one place.

Taken from CLIP (openai/CLIP, `data/prompts.md` and the ImageNet prompt-engineering notebook) so
zero-shot numbers compare with published ones: ImageNet uses the 7-template ensemble CLIP
selected, the fine-grained sets name their domain ("..., a type of aircraft."), scene sets use
SUN397's pair. A folder dataset's own `prompts.txt` (one template per line, each with `{}`)
replaces these (levl_eval.datasets.imagefolder).
"""

from __future__ import annotations

GENERIC: tuple[str, ...] = ("a photo of a {}.", "a photo of the {}.")

IMAGENET: tuple[str, ...] = (
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
)

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
