"""Tiny trees in the standard layouts of the classification and VQA readers, for tests.

Every image is a small RGB JPEG whose colour depends on its class (plus noise), so a working
pipeline can separate the classes; each writer returns the --datasets root it wrote under.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

IMAGENET_WNIDS = ("n01440764", "n01443537", "n02012849", "n03126707")  # tench, goldfish, 2 cranes
PETS_BREEDS = ("Abyssinian", "american_bulldog", "Bengal")
AIRCRAFT_VARIANTS = ("707-320", "Cessna 172", "F-16A/B")


def write_jpeg(path: Path, label: int, index: int, size: int = 32) -> Path:
    """A class-coloured noisy image (seeded by label and index), parents created."""
    rng = np.random.default_rng(1000 * label + index)
    colour = np.array([(70 * label) % 256, (150 + 40 * label) % 256, (200 - 50 * label) % 256])
    pixels = np.clip(colour + rng.integers(-15, 16, size=(size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def write_folder_tree(base: Path, classes: tuple[str, ...], per_class: dict[str, int],
                      suffix: str = ".jpg") -> None:
    """base/<split>/<class>/<i>.<suffix> for every split in `per_class` (split -> images)."""
    for split, count in per_class.items():
        for label, name in enumerate(classes):
            for i in range(count):
                write_jpeg(base / split / name / f"{split}_{label}_{i:03d}{suffix}", label, i)


def write_imagefolder_layout(root: Path, classes: tuple[str, ...] = ("blue_jay", "red_fox"),
                             train: int = 3, val: int = 2) -> Path:
    write_folder_tree(root / "imagefolder", classes, {"train": train, "val": val})
    return root


def write_imagenet_layout(root: Path, train: int = 4, val: int = 2,
                          wnids: tuple[str, ...] = IMAGENET_WNIDS) -> Path:
    write_folder_tree(root / "imagenet", wnids, {"train": train, "val": val}, ".JPEG")
    return root


def write_places365_layout(root: Path, train: int = 2, val: int = 2) -> Path:
    classes = ("airfield", "apartment_building-outdoor")
    write_folder_tree(root / "places365_standard", classes, {"train": train, "val": val})
    return root


def write_aircraft_layout(root: Path, trainval: int = 3, test: int = 2) -> Path:
    data = root / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("".join(f"{v}\n" for v in AIRCRAFT_VARIANTS))
    image_id = 1000000
    for split, count in (("trainval", trainval), ("test", test)):
        lines = []
        for label, variant in enumerate(AIRCRAFT_VARIANTS):
            for i in range(count):
                image_id += 1
                write_jpeg(data / "images" / f"{image_id:07d}.jpg", label, i)
                lines.append(f"{image_id:07d} {variant}\n")
        (data / f"images_variant_{split}.txt").write_text("".join(lines))
    return root


def write_pets_layout(root: Path, trainval: int = 3, test: int = 2) -> Path:
    base = root / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    offset = {"trainval": 0, "test": 100}
    for split, count in (("trainval", trainval), ("test", test)):
        lines = []
        for label, breed in enumerate(PETS_BREEDS):
            species = 1 if breed[0].isupper() else 2
            for i in range(count):
                name = f"{breed}_{offset[split] + i}"
                write_jpeg(base / "images" / f"{name}.jpg", label, offset[split] + i)
                lines.append(f"{name} {label + 1} {species} {label + 1}\n")
        (base / "annotations" / f"{split}.txt").write_text("".join(lines))
    return root


def gqa_document(image_ids: list[str]) -> dict:
    """Two questions per image: a verify (yes/no) and a query (colour) question."""
    questions = {}
    for i, image_id in enumerate(image_ids):
        questions[f"{image_id}0"] = {"imageId": image_id, "question": "Is the object red?",
                                     "answer": "yes" if i % 2 == 0 else "no",
                                     "types": {"structural": "verify", "semantic": "attr"}}
        questions[f"{image_id}1"] = {"imageId": image_id, "question": "What color is the object?",
                                     "answer": ("red", "blue")[i % 2],
                                     "types": {"structural": "query", "semantic": "attr"}}
    return questions


def write_gqa_layout(root: Path, train: int = 4, test: int = 2) -> Path:
    base = root / "gqa"
    (base / "questions").mkdir(parents=True, exist_ok=True)
    for split, ids in (("train_balanced", [f"{2370000 + i}" for i in range(train)]),
                       ("testdev_balanced", [f"n{161300 + i}" for i in range(test)])):
        for i, image_id in enumerate(ids):
            write_jpeg(base / "images" / f"{image_id}.jpg", i % 2, i)
        (base / "questions" / f"{split}_questions.json").write_text(json.dumps(gqa_document(ids)))
    return root


def write_vqav2_layout(root: Path, train: int = 3, test: int = 2) -> Path:
    """One question per image: "What color is it?" with ten human answers (8 agree)."""
    base = root / "vqav2"
    base.mkdir(parents=True, exist_ok=True)
    for coco, count in (("train2014", train), ("val2014", test)):
        questions, annotations = [], []
        for i in range(count):
            image_id, answer = 100 + i, ("red", "blue")[i % 2]
            write_jpeg(root / "coco" / coco / f"COCO_{coco}_{image_id:012d}.jpg", i % 2, i)
            questions.append({"image_id": image_id, "question": "What color is it?", "question_id": 10 * image_id})
            humans = [answer] * 8 + ["purple", "Red!"]
            annotations.append({"question_id": 10 * image_id, "image_id": image_id,
                                "answers": [{"answer": a, "answer_id": j + 1} for j, a in enumerate(humans[::-1])],
                                "multiple_choice_answer": answer, "answer_type": "other"})
        (base / f"v2_OpenEnded_mscoco_{coco}_questions.json").write_text(json.dumps({"questions": questions}))
        (base / f"v2_mscoco_{coco}_annotations.json").write_text(json.dumps({"annotations": annotations}))
    return root


def write_pope_layout(root: Path, images: int = 4) -> Path:
    """Per kind and image one positive and one negative existence question."""
    base = root / "pope"
    base.mkdir(parents=True, exist_ok=True)
    names = [f"COCO_val2014_{500 + i:012d}.jpg" for i in range(images)]
    for i, name in enumerate(names):
        write_jpeg(root / "coco" / "val2014" / name, i % 2, i)
    negatives = {"random": "giraffe", "popular": "chair", "adversarial": "fork"}
    for kind, negative in negatives.items():
        rows = []
        for i, name in enumerate(names):
            rows.append({"question_id": 2 * i + 1, "image": name, "text": "Is there a person in the image?", "label": "yes"})
            rows.append({"question_id": 2 * i + 2, "image": name, "text": f"Is there a {negative} in the image?", "label": "no"})
        (base / f"coco_pope_{kind}.json").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return root
