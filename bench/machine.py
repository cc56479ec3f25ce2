"""What every benchmark prints first: the machine, library versions, date and exact command,
so a figure is only ever compared with one taken on the same kind of machine."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from importlib import metadata

PACKAGES = ("levl-data", "torch", "torchvision", "pillow", "numpy", "webdataset", "img2dataset",
            "ffcv", "numba", "opencv-python", "opencv-python-headless")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe_machine(argv: list[str]) -> dict:
    """Print and return device, cores, versions, UTC date and command."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    facts = {
        "device": f"{cpu_model()}, {os.cpu_count()} cores (CPU only)",
        "python": platform.python_version(),
        "versions": versions,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join([os.path.relpath(sys.executable), *argv]),
    }
    print(f"device:   {facts['device']}")
    print(f"python:   {facts['python']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    print(f"date:     {facts['date']}")
    print(f"command:  {facts['command']}")
    return facts
