"""Cluster profiles: what a SLURM site needs on every job (partition, account, limits).

A profile is a small TOML file in `cluster/profiles/NAME.toml`, so switching clusters is one
flag (`--profile NAME`) and the recipe never mentions a site. Unknown keys are refused: a typo
in `acount` would otherwise submit with no account and fail in the queue, minutes later.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from levl_train.errors import TrainError

PROFILE_DIRS = (Path("cluster/profiles"),)


@dataclass(frozen=True)
class ClusterProfile:
    name: str = "default"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_per_task_gb: float | None = None
    time_min: int = 60

    def __post_init__(self) -> None:
        """Types are checked here, not by sbatch: `gpus_per_node = "8"` or `partition = 1`
        would otherwise reach the queue as something else than meant."""
        for key, minimum in (("gpus_per_node", 0), ("cpus_per_task", 1), ("time_min", 1)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise TrainError(
                    f"profile {self.name}: {key} must be an integer >= {minimum}, got {value!r}"
                )
        for key in ("partition", "account", "qos", "constraint"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, str):
                raise TrainError(f"profile {self.name}: {key} must be a string, got {value!r}")
        memory = self.mem_per_task_gb
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int | float)
                                   or not memory > 0):
            raise TrainError(f"profile {self.name}: mem_per_task_gb must be a positive number, "
                             f"got {memory!r}")


def find_profile(name_or_path: str) -> Path:
    """A path to a .toml file, or NAME looked up in ./cluster/profiles/NAME.toml."""
    direct = Path(name_or_path)
    if direct.suffix == ".toml":
        if direct.is_file():
            return direct
        raise TrainError(f"profile {direct}: no such file")
    for folder in PROFILE_DIRS:
        candidate = folder / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for d in PROFILE_DIRS if d.is_dir() for p in d.glob("*.toml"))
    raise TrainError(
        f"unknown cluster profile {name_or_path!r}; pass a .toml path or one of: "
        f"{', '.join(known) or '(none found in ./cluster/profiles)'}"
    )


def load_profile(name_or_path: str) -> ClusterProfile:
    path = find_profile(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise TrainError(f"profile {path}: not valid TOML ({err})") from None
    known = {f.name for f in dataclasses.fields(ClusterProfile)} - {"name"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise TrainError(
            f"profile {path}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(known))}"
        )
    return ClusterProfile(name=path.stem, **data)
