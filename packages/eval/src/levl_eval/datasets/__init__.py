"""Where each protocol's data comes from: the synthetic world, and standard on-disk layouts.

Real datasets live under one `--datasets ROOT` (alias `--data-root`), each in its usual directory
(the module of each reader documents its tree): `imagenet/`, `places365_standard/`,
`fgvc-aircraft-2013b/`, `oxford-iiit-pet/` and any `imagefolder/` (zeroshot and linear),
`ADEChallengeData2016/` and `coco_stuff164k/` (segmentation), `nyu/` (depth), `bg_challenge/`
(background), `coco/` and `flickr30k/` (retrieval), `gqa/`, `vqav2/` and `pope/` (vlm; COCO
images from `coco/`). A reader raises
DatasetNotFound when its directory is absent (the protocol is skipped and reported) and
EvalDataError naming the file when it is malformed. Each protocol registers its readers in its
own folder (`levl_eval.protocols.<name>.entry`).
"""

from __future__ import annotations

from levl_eval.datasets.ade20k import read_ade20k
from levl_eval.datasets.aircraft import read_aircraft
from levl_eval.datasets.cocostuff import read_cocostuff
from levl_eval.datasets.gqa import read_gqa
from levl_eval.datasets.imagefolder import read_imagefolder
from levl_eval.datasets.imagenet import read_imagenet
from levl_eval.datasets.in9 import read_in9
from levl_eval.datasets.karpathy import read_coco, read_flickr30k
from levl_eval.datasets.nyuv2 import read_nyuv2
from levl_eval.datasets.pets import read_pets
from levl_eval.datasets.places365 import read_places365
from levl_eval.datasets.pope import read_pope
from levl_eval.datasets.vqav2 import read_vqav2

__all__ = [
    "read_ade20k", "read_aircraft", "read_coco", "read_cocostuff", "read_flickr30k", "read_gqa",
    "read_imagefolder", "read_imagenet", "read_in9", "read_nyuv2", "read_pets", "read_places365",
    "read_pope", "read_vqav2",
]
