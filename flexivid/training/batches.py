"""Deterministic, step-indexed batches and randomness.

Everything random in a training step is a pure function of ``(seed, step, rank, micro)``: which clips a rank
reads, the per-step torch generator for noise, timesteps and caption dropout, and (distillation) the weak mode of
the step. A run resumed at step ``s`` therefore reads exactly the clips and draws exactly the noise the
uninterrupted run would have, with no sampler or generator state to save (the data position is the step).

Sample order: one global stream per epoch, a seeded permutation of the dataset; optimizer step ``s`` consumes
``G = micro * accum * world`` consecutive positions of that stream and micro-batch ``k`` of rank ``r`` takes
``micro`` of them (like ``DistributedSampler``, but addressable by step). A run resumed on a different number of
ranks (so a different ``G``) continues from the number of samples already consumed, ``start_sample``.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch

# Distinct random streams derived from the same seed.
_STREAM_EPOCH, _STREAM_NOISE, _STREAM_MODE = 1, 2, 3


def derive_seed(*keys: int) -> int:
    """A 63-bit seed from integer keys (numpy SeedSequence: well mixed and stable across platforms)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class StepSampler:
    """Batch sampler yielding the dataset indices of each micro-batch of steps ``start_step .. steps - 1``.

    Pass it to ``DataLoader(batch_sampler=...)``; item ``j`` of the iteration is micro-batch ``j % accum`` of step
    ``start_step + j // accum``. Step ``start_step`` begins at stream position ``start_sample`` (default
    ``start_step * G``: every earlier step ran with this run's ``G``).
    """

    def __init__(self, num_samples: int, seed: int, micro: int, accum: int, world: int, rank: int,
                 start_step: int, steps: int, start_sample: int | None = None):
        if num_samples < 1:
            raise ValueError("the training dataset is empty")
        self.n, self.seed, self.micro, self.accum, self.world, self.rank = num_samples, seed, micro, accum, world, rank
        self.start_step, self.steps = start_step, steps
        self.start_sample = start_step * micro * accum * world if start_sample is None else start_sample
        self._perm_epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng(derive_seed(self.seed, _STREAM_EPOCH, epoch)).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def indices(self, step: int, micro_index: int) -> list[int]:
        """Dataset indices of micro-batch ``micro_index`` of optimizer step ``step`` on this rank."""
        per_step = self.micro * self.accum * self.world
        first = (self.start_sample + (step - self.start_step) * per_step
                 + (micro_index * self.world + self.rank) * self.micro)
        out = []
        for pos in range(first, first + self.micro):
            epoch, offset = divmod(pos, self.n)
            out.append(int(self._permutation(epoch)[offset]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.steps):
            for k in range(self.accum):
                yield self.indices(step, k)

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step) * self.accum


def collate(items: list[dict]) -> dict:
    """Dataset items -> ``{"video": (B, 3, T, H, W), "caption": list[str]}`` (ground-truth attrs are not needed);
    precomputed items give ``latent`` / ``text`` / ``text_mask`` stacked instead of ``video``."""
    keys = [k for k in ("video", "latent", "text", "text_mask") if k in items[0]]
    return {**{k: torch.stack([it[k] for it in items]) for k in keys}, "caption": [it["caption"] for it in items]}


def step_generator(seed: int, step: int, rank: int, micro_index: int, device: torch.device) -> torch.Generator:
    """The generator for noise, timesteps and caption dropout of one micro-batch, on ``device``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, _STREAM_NOISE, step, rank, micro_index))
    return gen


def step_mode(seed: int, step: int, weights: dict[str, float]) -> str:
    """The mode trained at ``step``: drawn from ``weights`` (name -> weight), identical on every rank."""
    names = list(weights)
    return random.Random(derive_seed(seed, _STREAM_MODE, step)).choices(names, [weights[n] for n in names])[0]
