"""ImageNet-1k (ILSVRC-2012) as an ImageFolder, for zeroshot and linear.

Expected tree under the --datasets root (val sorted into class directories, e.g. with the
usual `valprep.sh`):

    imagenet/
        train/<wnid>/*.JPEG          n01440764/ ... n15075141/ (1000 directories)
        val/<wnid>/*.JPEG            the same 1000 directories, 50 images each
        classnames.txt               optional: one name per line in sorted-wnid order (e.g.
                                     OpenAI CLIP's curated names); prompts.txt optional too

Without classnames.txt each wnid is named by the first lemma of its WordNet synset from the
ImageNet-1k table timm ships (`n01440764` -> `tench`); a wnid outside ImageNet-1k then needs the
file. The two first lemmas used twice are told apart (`crane bird` / `construction crane`,
`maillot tights` / `tank suit`); CLIP's curated names, as classnames.txt, read better still.
The probe trains on at most 500 images per class (levl_eval.datasets.imagefolder).
"""

from __future__ import annotations

from pathlib import Path

from timm.data import ImageNetInfo  # timm (a levl-model dependency) ships the synset table

from levl_eval.datasets import prompts
from levl_eval.datasets.imagefolder import CLASSNAMES, FolderLayout, read_folder
from levl_eval.errors import EvalDataError
from levl_eval.taskdata import ClassificationData

# The two first lemmas ImageNet-1k uses twice, told apart (zero-shot needs distinct texts).
SHARED_LEMMAS = {"n02012849": "crane bird", "n03126707": "construction crane",
                 "n03710637": "maillot tights", "n03710721": "tank suit"}


def wordnet_names(split_dir: Path, wnids: list[str]) -> list[str]:
    """First lemma of each wnid's synset (the two shared ones disambiguated)."""
    info = ImageNetInfo("imagenet-1k")
    known = set(info.label_names())
    unknown = [wnid for wnid in wnids if wnid not in known]
    if unknown:
        raise EvalDataError(f"{split_dir / unknown[0]}: not an ImageNet-1k wnid; add "
                            f"{split_dir.parent / CLASSNAMES} (one class name per line, sorted "
                            "directory order)")
    return [SHARED_LEMMAS.get(wnid) or info.label_name_to_description(wnid).split(",")[0].strip()
            for wnid in wnids]


IMAGENET = FolderLayout("imagenet", "imagenet", prompts=prompts.IMAGENET, names=wordnet_names)


def read_imagenet(datasets_root: Path) -> ClassificationData:
    return read_folder(datasets_root, IMAGENET)
