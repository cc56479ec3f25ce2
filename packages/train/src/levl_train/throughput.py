"""Where a log interval's time went, what it processed, and how well it used the device.

Every rank measures its own interval; `ThroughputMeter.interval` (a collective: every rank calls
it) sums samples, tokens and FLOPs over ranks, averages the per-rank times and takes the largest
peak memory, so rank 0 logs global figures. Rates (samples/s, tokens/s, MFU) are over the time
spent fetching and computing; `step_time_s` is the whole wall time per step, so the gap between
it and `data_wait_s + compute_s` is what logging and checkpointing cost.
"""

from __future__ import annotations

import resource
import time

import torch
import torch.distributed as dist

from levl_train.config import TrainConfig
from levl_train.engine import uses_bf16
from levl_train.flops import device_peak_flops, matmul_precision, train_flops_per_sample

GIB = 1024**3
# The fields `interval` adds to a metrics.jsonl record (TensorBoard files them under perf/).
PERF_FIELDS = ("samples_per_s", "tokens_per_s", "text_tokens_per_sample", "step_time_s",
               "data_wait_s", "compute_s", "data_wait_frac", "flops_per_sample",
               "tflops_per_device", "mfu", "peak_mem_gib")


def peak_memory_bytes(device: torch.device) -> int:
    """CUDA's max_memory_allocated on a GPU, the process's max RSS on the CPU (both since start:
    the figure that decides whether a run fits)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def reduce_over_ranks(values: list[float], op: dist.ReduceOp, device: torch.device) -> list[float]:
    """`values` combined over ranks with `op` (unchanged in a single process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return values
    on = torch.device("cpu") if dist.get_backend() == "gloo" else device
    tensor = torch.tensor(values, dtype=torch.float64, device=on)
    dist.all_reduce(tensor, op=op)
    return tensor.tolist()


class ThroughputMeter:
    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.model_cfg, self.image_size = cfg.model, cfg.preprocess.size
        self.views, self.local = cfg.data.views, (cfg.data.local_views, cfg.data.local_size)
        self.device = device
        self.matmul = matmul_precision(uses_bf16(cfg, device))
        self.peak_flops = device_peak_flops(device, cfg.log.peak_tflops, self.matmul)
        self._reset()

    def _reset(self) -> None:
        self.samples = self.tokens = self.flops = 0.0
        self.data_s = self.compute_s = 0.0
        self.steps = 0
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.started = time.perf_counter()

    def wait_for(self, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        self.data_s += time.perf_counter() - start
        return result

    def compute(self, fn, *args):
        """Times `fn`'s work: on CUDA with events around its kernels, read once per interval
        (synchronising every step would stall the host the step is meant to run ahead of);
        elsewhere with the wall clock."""
        if self.device.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            result = fn(*args)
            end.record()
            self.events.append((start, end))
        else:
            started = time.perf_counter()
            result = fn(*args)
            self.compute_s += time.perf_counter() - started
        self.steps += 1
        return result

    def _device_compute_s(self) -> float:
        """The interval's CUDA event times, after one wait for its last step's kernels."""
        if not self.events:
            return 0.0
        self.events[-1][1].synchronize()
        return sum(start.elapsed_time(end) for start, end in self.events) / 1000

    def count_text(self, attention_mask_BL: torch.Tensor) -> None:
        """Count one micro-batch's samples, real text tokens and model FLOPs (on the CPU mask,
        before it moves to the device, so counting never waits for the GPU)."""
        lengths_B = attention_mask_BL.sum(dim=1).double()
        self.samples += len(lengths_B)
        self.tokens += float(lengths_B.sum())
        flops_B = train_flops_per_sample(self.model_cfg, self.image_size, lengths_B, self.views,
                                         self.local)
        self.flops += float(flops_B.sum())

    def interval(self) -> dict[str, float | None]:
        """The figures of the steps since the last call (a collective), then start anew."""
        self.compute_s += self._device_compute_s()
        wall_s = time.perf_counter() - self.started
        summed = reduce_over_ranks(
            [self.samples, self.tokens, self.flops, self.data_s, self.compute_s, wall_s,
             float(self.steps), 1.0], dist.ReduceOp.SUM, self.device)
        samples, tokens, flops, data_s, compute_s, wall_s, steps, ranks = summed
        (peak_bytes,) = reduce_over_ranks([float(peak_memory_bytes(self.device))],
                                          dist.ReduceOp.MAX, self.device)
        self._reset()
        return interval_figures(samples, tokens, flops, data_s / ranks, compute_s / ranks,
                                wall_s / ranks, steps / ranks, ranks, self.peak_flops,
                                peak_bytes)


def interval_figures(samples: float, tokens: float, flops: float, data_s: float,
                     compute_s: float, wall_s: float, steps: float, devices: float,
                     peak_flops: float | None, peak_bytes: float) -> dict[str, float | None]:
    """Global figures of one interval from its totals (times are per rank, averaged)."""
    busy_s = data_s + compute_s
    per_device_flops_s = flops / busy_s / devices if busy_s else 0.0
    return {
        "samples_per_s": samples / busy_s if busy_s else 0.0,
        "tokens_per_s": tokens / busy_s if busy_s else 0.0,
        "text_tokens_per_sample": tokens / samples if samples else 0.0,
        "step_time_s": wall_s / steps if steps else 0.0,
        "data_wait_s": data_s / steps if steps else 0.0,
        "compute_s": compute_s / steps if steps else 0.0,
        "data_wait_frac": data_s / busy_s if busy_s else 0.0,
        "flops_per_sample": flops / samples if samples else 0.0,
        "tflops_per_device": per_device_flops_s / 1e12,
        "mfu": per_device_flops_s / peak_flops if peak_flops else None,
        "peak_mem_gib": peak_bytes / GIB,
    }
