"""COCO-Stuff 164k for linear segmentation (171 classes, as mmsegmentation's coco_stuff164k).

Expected tree under the --datasets root (mmsegmentation's `data/coco_stuff164k`):

    coco_stuff164k/
        images/train2017/000000000009.jpg ...        COCO 2017 images (cocodataset.org:
        images/val2017/000000000139.jpg ...          train2017.zip, val2017.zip)
        annotations/train2017/000000000009.png ...   stuffthingmaps_trainval2017.zip
        annotations/val2017/000000000139.png ...     (github.com/nightrome/cocostuff)

Each annotation is an 8-bit PNG the size of its image holding the COCO-Stuff id minus one
(0..181: things 0..90 with gaps, stuff 91..181) and 255 = unlabeled. The 182 ids include 11 thing
ids that COCO never annotates (0-based 11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90: street sign,
hat, shoe, eye glasses, plate, mirror, window, desk, door, blender, hair brush); like
mmsegmentation's `tools/dataset_converters/coco_stuff164k.py`, the other 171 ids are mapped in
order to 0..170 and everything else to 255 (void). The raw maps are read and mapped in memory,
so the converter's `*_labelTrainIds.png` files are not needed (and are ignored). The head trains
on train2017 and is scored on val2017 (5,000 images). Every image must have its annotation, of
the same size and 8-bit: checked from the file headers before any model runs.
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.data.splits import EvalSplit
from levl_eval.datasets.files import PairedLayout, dataset_dir, paired_samples
from levl_eval.protocols.segmentation.data import SegmentationData
from levl_eval.protocols.segmentation.metrics import VOID

DIRNAME = "coco_stuff164k"
NUM_STORED_IDS = 182
UNUSED_IDS = frozenset({11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90})
LAYOUT = PairedLayout(
    splits_hint="COCO-Stuff needs images/{train2017,val2017}",
    empty_hint="re-extract {split}.zip",
    annotation_hint="extract stuffthingmaps_trainval2017.zip into annotations/",
    mode_hint="not an 8-bit stuffthingmap; replace the annotation",
)
CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush", "banner", "blanket", "branch", "bridge",
    "building-other", "bush", "cabinet", "cage", "cardboard", "carpet", "ceiling-other",
    "ceiling-tile", "cloth", "clothes", "clouds", "counter", "cupboard", "curtain", "desk-stuff",
    "dirt", "door-stuff", "fence", "floor-marble", "floor-other", "floor-stone", "floor-tile",
    "floor-wood", "flower", "fog", "food-other", "fruit", "furniture-other", "grass", "gravel",
    "ground-other", "hill", "house", "leaves", "light", "mat", "metal", "mirror-stuff", "moss",
    "mountain", "mud", "napkin", "net", "paper", "pavement", "pillow", "plant-other", "plastic",
    "platform", "playingfield", "railing", "railroad", "river", "road", "rock", "roof", "rug",
    "salad", "sand", "sea", "shelf", "sky-other", "skyscraper", "snow", "solid-other", "stairs",
    "stone", "straw", "structural-other", "table", "tent", "textile-other", "towel", "tree",
    "vegetable", "wall-brick", "wall-concrete", "wall-other", "wall-panel", "wall-stone",
    "wall-tile", "wall-wood", "water-other", "waterdrops", "window-blind", "window-other", "wood",
)


def label_map() -> tuple[int, ...]:
    """256-entry lookup: stored id -> contiguous class 0..170; unused ids, >181 and 255 -> void."""
    used = [i for i in range(NUM_STORED_IDS) if i not in UNUSED_IDS]
    lookup = [VOID] * 256
    for class_id, stored_id in enumerate(used):
        lookup[stored_id] = class_id
    return tuple(lookup)


def read_cocostuff(datasets_root: Path) -> SegmentationData:
    root = dataset_dir(datasets_root, DIRNAME)
    lookup = label_map()

    def split(name: str) -> EvalSplit:
        return EvalSplit(f"cocostuff/{name}", files=paired_samples(root, name, LAYOUT), label_map=lookup)

    return SegmentationData("cocostuff", split("train2017"), split("val2017"), CLASSES, root=root)
