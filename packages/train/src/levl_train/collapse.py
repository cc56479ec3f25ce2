"""Dimensional collapse made visible: a run whose embeddings' effective rank stays low is
flagged in metrics.jsonl, on the progress bar and in `levl-train status`, with the loss term
that dominated while it happened (the term to weaken, or the regulariser to strengthen).

Effective rank is measured on rank 0's last micro-batch (levl_train.metrics), so it cannot
exceed min(batch, E); the threshold is a fraction of that ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from levl_train.config import TrainConfig

EMBEDDINGS = {"z_v": "erank_v", "z_t": "erank_t"}


def weighted_terms(cfg: TrainConfig, losses: dict[str, float]) -> dict[str, float]:
    """Each term's share of the loss as the objective weighs it."""
    objective = cfg.objective
    if objective.name != "levljepa":
        return {objective.name: losses["loss"]}
    sigreg = objective.use_sigreg
    lambda_v, lambda_t = (objective.lambda_v, objective.lambda_t) if sigreg else (0.0, 0.0)
    return {"pred": (1 - lambda_v - lambda_t) * losses["pred"],
            "sigreg_v": lambda_v * losses["sigreg_v"], "sigreg_t": lambda_t * losses["sigreg_t"]}


@dataclass
class CollapseWatch:
    """Tracks, per embedding, since which logged step its effective rank has stayed below
    `threshold`; flags it once that has lasted `patience` steps."""

    threshold: float
    patience: int
    below_since: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_run(cls, cfg: TrainConfig, micro_batch: int) -> CollapseWatch:
        ceiling = min(micro_batch, cfg.model.heads.embed_dim)
        return cls(cfg.log.collapse_fraction * ceiling, cfg.log.collapse_steps)

    def update(self, step: int, record: dict, terms: dict[str, float]) -> dict | None:
        """The record's `collapse` entry, or None while no embedding is flagged."""
        for name, key in EMBEDDINGS.items():
            if record[key] < self.threshold:
                self.below_since.setdefault(name, step)
            else:
                self.below_since.pop(name, None)
        flagged = {name: since for name, since in self.below_since.items()
                   if step - since >= self.patience}
        if not flagged:
            return None
        return {"embeddings": sorted(flagged), "since_step": min(flagged.values()),
                "threshold": round(self.threshold, 3), "driver": max(terms, key=terms.get)}


def describe(collapse: dict) -> str:
    """One line for the progress bar and `levl-train status`."""
    return (f"{'+'.join(collapse['embeddings'])} effective rank < {collapse['threshold']:g} "
            f"since step {collapse['since_step']} (dominant term: {collapse['driver']})")
