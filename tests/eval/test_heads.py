"""The one head-training loop: it recovers a known linear map, is deterministic under its seed
whatever the global RNG did, and runs exactly the epochs, batches and steps it is asked for."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from levl_eval.heads import HeadTraining, fit_head, lr_schedule, seeded_linear, seeded_module

QUICK = HeadTraining(lr=0.05, weight_decay=0.0, batch_size=32, epochs=60, seed=0)


def _regression(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """y = x W^T exactly, for 256 samples of 6 dims mapped to 3."""
    generator = torch.Generator().manual_seed(seed)
    map_OI = torch.randn(3, 6, generator=generator)
    x_ND = torch.randn(256, 6, generator=generator)
    return x_ND, x_ND @ map_OI.T, map_OI


def _fit_regression(training: HeadTraining, seed: int = 0) -> tuple[nn.Linear, list[float]]:
    x_ND, y_NO, _ = _regression(seed)
    head = seeded_linear(6, 3, training.seed, bias=False)
    losses = fit_head(head, len(x_ND), lambda b: F.mse_loss(head(x_ND[b]), y_NO[b]), training)
    return head, losses


def test_recovers_a_known_linear_map() -> None:
    head, losses = _fit_regression(QUICK)
    torch.testing.assert_close(head.weight.detach(), _regression(0)[2], atol=1e-2, rtol=0)
    assert losses[-1] < 1e-3 * losses[0]
    assert not head.training  # left in eval mode


def test_separates_separable_classes_under_a_cosine_schedule() -> None:
    generator = torch.Generator().manual_seed(1)
    labels_N = torch.arange(4).repeat(50)
    x_ND = 4.0 * F.one_hot(labels_N, 4).float() + torch.randn(200, 4, generator=generator)
    head = seeded_linear(4, 4, 0)
    fit_head(head, 200, lambda b: F.cross_entropy(head(x_ND[b]), labels_N[b]),
             HeadTraining(lr=0.1, weight_decay=0.0, batch_size=16, epochs=10, seed=0, schedule="cosine"))
    with torch.no_grad():
        assert (head(x_ND).argmax(dim=1) == labels_N).float().mean() > 0.97


def test_is_deterministic_under_its_seed_whatever_the_global_rng_did() -> None:
    torch.manual_seed(123)
    first, first_losses = _fit_regression(QUICK)
    torch.manual_seed(456)
    second, second_losses = _fit_regression(QUICK)
    assert torch.equal(first.weight, second.weight) and first_losses == second_losses
    other, other_losses = _fit_regression(replace(QUICK, seed=1))
    assert not torch.equal(first.weight, other.weight) and other_losses != first_losses


def test_runs_the_epochs_and_batch_sizes_asked_for() -> None:
    seen: list[list[int]] = []
    head = nn.Linear(1, 1)

    def batch_loss(batch_B: torch.Tensor) -> torch.Tensor:
        seen.append(batch_B.tolist())
        return head(torch.ones(len(batch_B), 1)).sum()

    losses = fit_head(head, 10, batch_loss, HeadTraining(lr=1e-3, weight_decay=0.0, batch_size=4,
                                                         epochs=3, seed=0))
    assert [len(batch) for batch in seen] == [4, 4, 2] * 3 and len(losses) == 9
    epochs = [sorted(sum(seen[start:start + 3], [])) for start in (0, 3, 6)]
    assert epochs == [list(range(10))] * 3  # each epoch a permutation of every sample
    assert seen[:3] != seen[3:6]  # reshuffled between epochs


def test_max_steps_cuts_the_epochs_and_none_skips_a_batch() -> None:
    head = nn.Linear(1, 1)
    before = head.weight.detach().clone()
    calls: list[int] = []

    def nothing_to_learn(batch_B: torch.Tensor) -> None:
        calls.append(len(batch_B))
        return None

    capped = HeadTraining(lr=1e-3, weight_decay=0.1, batch_size=4, epochs=5, seed=0, max_steps=7)
    assert fit_head(head, 10, nothing_to_learn, capped) == []  # no step, no loss recorded
    assert len(calls) == 7 == capped.planned_steps(10)
    assert torch.equal(head.weight, before)  # AdamW's weight decay did not step either


def test_trains_under_a_callers_no_grad() -> None:
    with torch.no_grad():
        head, losses = _fit_regression(QUICK)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(("schedule", "last_lr"), [("constant", 0.5), ("cosine", 0.0)])
def test_schedule_is_constant_or_cosine_to_zero_over_the_planned_steps(schedule, last_lr) -> None:
    training = HeadTraining(lr=0.5, weight_decay=0.0, batch_size=4, epochs=2, seed=0, schedule=schedule)
    optimizer = torch.optim.AdamW(nn.Linear(1, 1).parameters(), lr=training.lr)
    scheduler = lr_schedule(optimizer, training, num_samples=10)
    for _ in range(training.planned_steps(10)):  # 2 epochs of 3 batches
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(last_lr, abs=1e-12)


def test_seeded_initial_weights_depend_on_the_seed_only() -> None:
    torch.manual_seed(1)
    layer = seeded_linear(8, 3, seed=5)
    torch.manual_seed(2)
    again = seeded_linear(8, 3, seed=5)
    assert torch.equal(layer.weight, again.weight) and torch.equal(layer.bias, again.bias)
    assert layer.weight.abs().max() <= 8**-0.5  # torch's default bound
    shared = torch.Generator().manual_seed(5)
    first, second = seeded_linear(8, 3, shared), seeded_linear(8, 3, shared)
    assert torch.equal(first.weight, layer.weight) and not torch.equal(second.weight, layer.weight)
    state = torch.random.get_rng_state()
    built = seeded_module(3, lambda: nn.Linear(8, 3))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left as it was
    assert torch.equal(built.weight, seeded_module(3, lambda: nn.Linear(8, 3)).weight)
