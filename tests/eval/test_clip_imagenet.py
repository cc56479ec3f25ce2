"""levl_eval's stored copy of CLIP's ImageNet zero-shot metadata (the 80 OpenAI templates and the
1000 curated class names) equals open_clip's, so zero-shot numbers compare with published ones.

levl-eval must not import open_clip at runtime, so the lists live in a JSON file; open_clip (a
dev dependency) is read here only. Its `zero_shot_metadata.py` is plain data, loaded from its
file so the check does not pay for importing open_clip's models.

Regenerate the file after an open_clip update with `.venv/bin/python tests/eval/test_clip_imagenet.py`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path
from types import ModuleType

from levl_eval.datasets import clip_imagenet

SOURCE_MODULE = "open_clip/zero_shot_metadata.py"


def open_clip_metadata() -> ModuleType:
    """open_clip's zero_shot_metadata module, executed from its file alone."""
    package = importlib.util.find_spec("open_clip")
    assert package is not None and package.submodule_search_locations, "open_clip_torch is a dev dependency"
    path = Path(package.submodule_search_locations[0]) / "zero_shot_metadata.py"
    spec = importlib.util.spec_from_file_location("open_clip_zero_shot_metadata", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def open_clip_templates(metadata: ModuleType) -> list[str]:
    """open_clip's templates are lambdas; filled with `{}` they become str.format templates."""
    return [template("{}") for template in metadata.OPENAI_IMAGENET_TEMPLATES]


def test_stored_templates_are_open_clip_s_80_openai_imagenet_templates() -> None:
    metadata = open_clip_metadata()
    assert list(clip_imagenet.OPENAI_IMAGENET_TEMPLATES) == open_clip_templates(metadata)
    assert len(clip_imagenet.OPENAI_IMAGENET_TEMPLATES) == 80
    name = "tench"  # filling a stored template names the class exactly as open_clip's lambda does
    assert [t.format(name) for t in clip_imagenet.OPENAI_IMAGENET_TEMPLATES] == [
        template(name) for template in metadata.OPENAI_IMAGENET_TEMPLATES]


def test_stored_class_names_are_open_clip_s_curated_imagenet_names() -> None:
    assert list(clip_imagenet.IMAGENET_CLASSNAMES) == list(open_clip_metadata().IMAGENET_CLASSNAMES)
    assert len(clip_imagenet.IMAGENET_CLASSNAMES) == 1000


def test_stored_file_records_its_source_and_licence() -> None:
    document = clip_imagenet.metadata_document()
    assert SOURCE_MODULE in document["source"] and "MIT" in document["license"]


def test_levl_eval_never_imports_open_clip() -> None:
    """open_clip is a dev/bench dependency only; the stored JSON stands in for it at runtime."""
    package = Path(clip_imagenet.__file__).parents[1]
    importers = [path.relative_to(package) for path in sorted(package.rglob("*.py"))
                 if "open_clip" in imported_modules(path)]
    assert importers == []


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a source file imports (anywhere in it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def regenerate() -> Path:
    """Write levl_eval/datasets/clip_imagenet.json from the installed open_clip."""
    from importlib.metadata import version

    metadata = open_clip_metadata()
    document = {
        "source": (f"open_clip_torch {version('open_clip_torch')}, {SOURCE_MODULE} "
                   "(OPENAI_IMAGENET_TEMPLATES, IMAGENET_CLASSNAMES); both from OpenAI CLIP, "
                   "notebooks/Prompt_Engineering_for_ImageNet.ipynb"),
        "license": ("MIT. open_clip: Copyright (c) 2012-2021 Gabriel Ilharco, Mitchell Wortsman, "
                    "Nicholas Carlini, Rohan Taori, Achal Dave, Vaishaal Shankar, John Miller, "
                    "Hongseok Namkoong, Hannaneh Hajishirzi, Ali Farhadi, Ludwig Schmidt. "
                    "OpenAI CLIP: Copyright (c) 2021 OpenAI."),
        "generated_by": ".venv/bin/python tests/eval/test_clip_imagenet.py",
        "templates": open_clip_templates(metadata),
        "classnames": list(metadata.IMAGENET_CLASSNAMES),
    }
    path = clip_imagenet.METADATA_PATH
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    print(f"wrote {regenerate()}")
