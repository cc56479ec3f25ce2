"""ImageNet-1k (ILSVRC-2012) as an ImageFolder, for zeroshot and linear.

Expected tree under the --datasets root (val sorted into class directories, e.g. with the
usual `valprep.sh`):

    imagenet/
        train/<wnid>/*.JPEG          n01440764/ ... n15075141/ (1000 directories)
        val/<wnid>/*.JPEG            the same 1000 directories, 50 images each
        classnames.txt               optional: one name per line in sorted-wnid order;
                                     prompts.txt optional too

Zero-shot names the classes with CLIP's curated names (levl_eval.datasets.clip_imagenet, looked
up by wnid, so a subset of the 1000 classes works too), as published ImageNet zero-shot numbers
do; `ZeroShot(class_names="dataset")` (`levl-eval ... --class-names dataset`) uses the dataset's
own names instead. Those are classnames.txt's, else the first lemma of each wnid's WordNet synset
from the ImageNet-1k table timm ships (`n01440764` -> `tench`), with the two first lemmas used
twice told apart (`crane bird` / `construction crane`, `maillot tights` / `tank suit`); a wnid
outside ImageNet-1k needs classnames.txt (and has no curated name). The prompts are CLIP's 80
ImageNet templates unless prompts.txt is given. The probe trains on every train image unless
asked for a per-class cap (levl_eval.datasets.imagefolder).
"""

from __future__ import annotations

from pathlib import Path

from timm.data import ImageNetInfo  # timm (a levl-model dependency) ships the synset table

from levl_eval.data.splits import ClassificationData
from levl_eval.datasets import prompts
from levl_eval.datasets.clip_imagenet import IMAGENET_CLASSNAMES
from levl_eval.datasets.imagefolder import CLASSNAMES, FolderLayout, read_folder
from levl_eval.errors import EvalDataError

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


def clip_names(wnids: list[str]) -> tuple[str, ...]:
    """CLIP's curated name of each wnid (by its ImageNet-1k index), or () when one is outside
    ImageNet-1k (zero-shot then uses the dataset's names)."""
    index = {wnid: i for i, wnid in enumerate(ImageNetInfo("imagenet-1k").label_names())}
    if any(wnid not in index for wnid in wnids):
        return ()
    return tuple(IMAGENET_CLASSNAMES[index[wnid]] for wnid in wnids)


CLIP_NAMES_SOURCE = "CLIP's curated ImageNet class names (open_clip IMAGENET_CLASSNAMES)"
IMAGENET = FolderLayout("imagenet", "imagenet", prompts=prompts.IMAGENET, names=wordnet_names,
                        curated=clip_names, curated_source=CLIP_NAMES_SOURCE)


def read_imagenet(datasets_root: Path) -> ClassificationData:
    return read_folder(datasets_root, IMAGENET)
