"""The protocols, found by name: every package under `levl_eval.protocols` with an
`entry.ENTRY` (a ProtocolEntry) is one, in the order the entries declare.

Nothing here names a protocol; the tables other modules read (PROTOCOLS, OPT_IN,
SYNTH_TASKS, REAL_DATASETS) are built from the entries.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from levl_eval import protocols as protocols_package
from levl_eval.data.splits import EvalData
from levl_eval.errors import EvalError
from levl_eval.protocols.base import EvalProtocol
from levl_eval.protocols.entry import ProtocolEntry


def discover_entries() -> dict[str, ProtocolEntry]:
    """Each protocol package's ENTRY, keyed by its folder's name (which must be the protocol's)."""
    found = []
    for module in pkgutil.iter_modules(protocols_package.__path__):
        if not module.ispkg:
            continue
        entry = importlib.import_module(f"{protocols_package.__name__}.{module.name}.entry").ENTRY
        if entry.name != module.name:
            raise EvalError(f"protocols/{module.name}: its protocol is named {entry.name!r}; "
                            "name the folder after the protocol")
        found.append(entry)
    return {entry.name: entry for entry in sorted(found, key=lambda entry: entry.order)}


ENTRIES: dict[str, ProtocolEntry] = discover_entries()
PROTOCOLS: dict[str, type[EvalProtocol]] = {name: e.protocol for name, e in ENTRIES.items()}
# Protocols `levl-eval all` leaves out unless asked for (minutes per encoder on a CPU).
OPT_IN: frozenset[str] = frozenset(name for name, e in ENTRIES.items() if e.opt_in)
SYNTH_TASKS: dict[str, Callable[[EvalData], Any]] = {name: e.synth_task for name, e in ENTRIES.items()}
REAL_DATASETS: dict[str, Any] = {name: e.real_datasets for name, e in ENTRIES.items()}


def protocol_entry(name: str) -> ProtocolEntry:
    """The entry of protocol `name`; an unknown name is a one-line error listing the known."""
    if name not in ENTRIES:
        raise EvalError(f"unknown protocol {name!r} (known: {', '.join(ENTRIES)})")
    return ENTRIES[name]


def build_protocol(name: str, *, device: str = "cpu", **options: object) -> EvalProtocol:
    """The protocol called `name`, set up to run its own training (if any) on `device`;
    `options` go to its constructor (e.g. `settings=VLMSettings(...)`)."""
    return protocol_entry(name).protocol(device=device, **options)

