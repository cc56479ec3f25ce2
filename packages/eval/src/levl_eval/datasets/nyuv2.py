"""NYU Depth v2 for linear depth, in the layout BTS, the Monocular-Depth-Estimation-Toolbox and
DINOv2/v3 use (RGB + 16-bit depth PNG pairs and the standard train/test file lists).

Expected tree under the --datasets root:

    nyu/
        nyu_train.txt      one pair per line: "<rgb> <depth> [focal]", paths relative to nyu/
        nyu_test.txt       (a leading "/" is allowed), e.g.
                           "/kitchen_0028b/rgb_00045.jpg /kitchen_0028b/sync_depth_00045.png 518.8579"
        basement_0001a/rgb_00000.jpg + sync_depth_00000.png ...   train: BTS's `sync` (24,231 pairs)
        bathroom/rgb_00045.jpg + sync_depth_00045.png ...         test: BTS's `official_splits/test`
                                                                  (the 654 images of Eigen's split)

Where to get it: the BTS README (github.com/cleinc/bts, "Prepare NYU Depth V2 test set" and the
`sync.zip` train subset); the lists are BTS's `train_test_inputs/nyudepthv2_{train,test}_
files_with_gt.txt` (or the toolbox's `splits/nyu_{train,test}.txt`) saved as nyu_train.txt and
nyu_test.txt. Depth PNGs are single-channel 16-bit, millimetres, 0 = no measurement; they are
read as metres (levl_eval.protocols.depth.maps). The head trains on the train list and is scored on the
test list at each map's original 640x480 resolution, on pixels with depth in (0.001, 10] m
inside Eigen's crop (rows 45..470, cols 41..600 of that frame; test only). Every listed file must
exist, each depth map must be 16-bit and the size of its image, and each test map 640x480:
checked from the lists and file headers before any model runs.
"""

from __future__ import annotations

from pathlib import Path

from levl_eval.data.splits import EvalSplit, FileSample
from levl_eval.datasets.files import dataset_dir, numbered_lines
from levl_eval.datasets.headers import image_header
from levl_eval.errors import EvalDataError
from levl_eval.protocols.depth.data import DepthData
from levl_eval.protocols.depth.maps import EIGEN_FRAME_HW, is_depth_mode

DIRNAME = "nyu"
SPLIT_LISTS = {"train": "nyu_train.txt", "test": "nyu_test.txt"}
MIN_DEPTH_M, MAX_DEPTH_M = 1e-3, 10.0


def listed_pair(root: Path, listing: Path, number: int, line: str, eigen_frame: bool) -> FileSample:
    """One list line -> a checked (rgb, depth) sample; `eigen_frame`: its map is scored inside
    Eigen's crop, which exists only on NYUv2's own 640x480 frame."""
    fields = line.split()
    if len(fields) < 2:
        raise EvalDataError(f"{listing}: line {number} has {len(fields)} field(s); expected "
                            "'<rgb> <depth> [focal]'")
    rgb, depth = (root / field.lstrip("/") for field in fields[:2])
    for path in (rgb, depth):
        if not path.is_file():
            raise EvalDataError(f"{path}: missing (listed in {listing.name} line {number}); "
                                "re-extract the dataset or fix the list")
    (rgb_size, _), (depth_size, depth_mode) = image_header(rgb), image_header(depth)
    if not is_depth_mode(depth_mode):
        raise EvalDataError(f"{depth}: PIL mode {depth_mode}, not a 16-bit depth PNG in millimetres; "
                            "replace the file")
    if rgb_size != depth_size:
        raise EvalDataError(f"{depth}: size {depth_size} differs from its image's {rgb_size}; "
                            "replace the depth map")
    if eigen_frame and depth_size != EIGEN_FRAME_HW[::-1]:
        raise EvalDataError(f"{depth}: {depth_size[0]}x{depth_size[1]}, but Eigen's test crop is "
                            f"defined on NYUv2's {EIGEN_FRAME_HW[1]}x{EIGEN_FRAME_HW[0]} frame; "
                            "replace it with the original map")
    return FileSample(image=rgb, mask=depth)


def listed_samples(root: Path, split: str) -> tuple[FileSample, ...]:
    """Every pair named by the split's list file, in list order."""
    listing = root / SPLIT_LISTS[split]
    if not listing.is_file():
        raise EvalDataError(f"{listing}: missing; NYUv2 needs {' and '.join(SPLIT_LISTS.values())} "
                            "(see levl_eval.datasets.nyuv2)")
    lines = numbered_lines(listing, "one '<rgb> <depth> [focal]' pair per line")
    samples = tuple(listed_pair(root, listing, number, line, eigen_frame=split == "test")
                    for number, line in lines)
    if not samples:
        raise EvalDataError(f"{listing}: lists no image/depth pairs")
    return samples


def read_nyuv2(datasets_root: Path) -> DepthData:
    root = dataset_dir(datasets_root, DIRNAME)
    train = EvalSplit("nyu/train", files=listed_samples(root, "train"), mask_kind="depth_mm")
    test = EvalSplit("nyu/test", files=listed_samples(root, "test"), mask_kind="depth_mm_eigen")
    return DepthData("nyu", train, test, min_depth=MIN_DEPTH_M, max_depth=MAX_DEPTH_M, root=root,
                     notes={"lists": dict(SPLIT_LISTS), "depth_png": "uint16 millimetres, 0 = invalid",
                            "test_crop": "Eigen crop (rows 45:471, cols 41:601 of 640x480)"})
