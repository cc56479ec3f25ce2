"""Spatial words shared by captions and questions, computed from object centres."""

from __future__ import annotations

from levl_data.synth.scene import SceneObject


def relation(a: SceneObject, b: SceneObject) -> str:
    """Where `a` is relative to `b`, along the axis on which their centres differ most."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def region(obj: SceneObject, image_size: int) -> str:
    """Coarse 3x3 position ("in the top left", "in the center")."""
    third = image_size / 3
    col = ("left", "", "right")[min(int(obj.cx // third), 2)]
    row = ("top", "", "bottom")[min(int(obj.cy // third), 2)]
    if row and col:
        return f"in the {row} {col}"
    if row:
        return f"at the {row}"
    return f"on the {col}" if col else "in the center"
