"""Training progress: a tqdm bar and periodic log lines on rank 0, the same records in ``<out_dir>/log.jsonl``.

Losses stay on the device between log steps (no per-step host sync); at a log step they are averaged over the
window and over ranks with one ``all_reduce``, so ``log_step`` must be called by every rank at every step.

Throughput: steps/s, samples/s (global), and an *estimated* achieved TFLOP/s per GPU from the analytic FLOPs
(``flexivid.models.flops.forward_flops``) that the engine passes per step; the estimate counts a backward pass
as twice the forward (x3 for fwd+bwd), which overstates frozen-base LoRA training a little.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm


def _after(line: str, step: int) -> bool:
    try:
        rec = json.loads(line)
    except json.JSONDecodeError:  # a line cut by a kill: drop it
        return True
    return rec.get("event") in ("train", "diverged") and rec.get("step", 0) > step


class TrainMonitor:
    """Progress bar + windowed metrics for steps ``start_step + 1 .. total_steps`` (1-based completed steps)."""

    def __init__(self, out_dir: str | Path, total_steps: int, start_step: int, log_every: int, rank: int,
                 samples_per_step: int, device: torch.device, modes: list[str]):
        self.rank, self.log_every, self.total = rank, max(1, log_every), total_steps
        self.samples_per_step, self.device = samples_per_step, device
        self.modes = modes
        self.path = Path(out_dir) / "log.jsonl"
        self.bar = tqdm(total=total_steps, initial=start_step, disable=rank != 0, dynamic_ncols=True,
                        desc="train", unit="step", mininterval=1.0)  # 1 s: keeps redirected logs short
        self._reset()

    def _reset(self) -> None:
        self.t0 = time.perf_counter()
        self.steps, self.flops = 0, 0.0
        self.loss_sum = torch.zeros(len(self.modes), dtype=torch.float64, device=self.device)
        self.count = [0] * len(self.modes)

    def event(self, record: dict, line: str | None = None) -> None:
        """Rank 0: append ``record`` to log.jsonl and print ``line`` (above the bar)."""
        if self.rank != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps({"time": time.time(), **record}, allow_nan=False) + "\n")  # strict JSON
        if line:
            tqdm.write(line)

    def drop_after(self, step: int) -> None:
        """Rank 0: remove the ``train`` records after ``step`` (an interrupted run's steps that a resume redoes)."""
        if self.rank != 0 or not self.path.is_file():
            return
        from ..fileio import atomic_write

        lines = self.path.read_text().splitlines(keepends=True)
        keep = [ln for ln in lines if not _after(ln, step)]
        if len(keep) != len(lines):
            atomic_write(self.path, lambda p: Path(p).write_text("".join(keep)))

    def log_step(self, step: int, loss: torch.Tensor, mode: str, flops_per_gpu: float, lr: float) -> None:
        """Record completed optimizer step ``step`` (1-based): its mean micro-batch ``loss`` (0-dim, on device)."""
        i = self.modes.index(mode)
        self.loss_sum[i] += loss.detach().double()
        self.count[i] += 1
        self.steps += 1
        self.flops += flops_per_gpu
        self.bar.update(1)
        if step % self.log_every and step != self.total:
            return
        sums = self.loss_sum.clone()
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(sums)
            sums /= dist.get_world_size()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = max(time.perf_counter() - self.t0, 1e-9)
        by_mode = {m: sums[k].item() / c for k, (m, c) in enumerate(zip(self.modes, self.count)) if c}
        rec = {"event": "train", "step": step, "loss": float(sums.sum().item() / max(1, sum(self.count))),
               "lr": lr, "steps_per_s": self.steps / dt, "samples_per_s": self.steps * self.samples_per_step / dt,
               "tflops_per_gpu": self.flops / dt / 1e12}
        if len(self.modes) > 1:
            rec["loss_by_mode"] = by_mode
        if self.device.type == "cuda":
            rec["gpu_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        line = (f"step {step}/{self.total} | loss {rec['loss']:.4g} | lr {lr:.2e} | {rec['steps_per_s']:.2f} step/s"
                f" | {rec['samples_per_s']:.1f} samples/s | ~{rec['tflops_per_gpu']:.3g} TFLOP/s/GPU")
        if "gpu_mem_gb" in rec:
            line += f" | mem {rec['gpu_mem_gb']:.1f} GB"
        if len(by_mode) > 1:
            line += " | " + " ".join(f"{m} {v:.4g}" for m, v in by_mode.items())
        self.event(rec, line)
        self.bar.set_postfix(loss=f"{rec['loss']:.4g}")
        self._reset()

    def close(self) -> None:
        self.bar.close()
