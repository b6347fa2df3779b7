"""Checkpointed RNG state restores on a process that sees fewer GPUs than the one that saved it (CUDA faked)."""
import random

import torch

from flexivid.training import checkpoint


class FakeCuda:
    """Stands in for ``torch.cuda`` on a machine with ``n`` visible devices, this process on device ``current``."""

    def __init__(self, n: int, current: int = 0):
        self.n, self.current, self.set = n, current, []

    def is_available(self):
        return True

    def current_device(self):
        return self.current

    def get_rng_state(self):
        return torch.full((8,), self.current, dtype=torch.uint8)

    def get_rng_state_all(self):
        return [torch.full((8,), i, dtype=torch.uint8) for i in range(self.n)]

    def set_rng_state(self, state):
        self.set.append(state)

    def set_rng_state_all(self, states):  # what the earlier code called: fails with fewer devices than states
        if len(states) > self.n:
            raise IndexError("tuple index out of range")
        self.set.extend(states)


def test_saved_state_holds_only_this_rank_device(monkeypatch):
    fake = FakeCuda(n=2, current=1)
    monkeypatch.setattr(checkpoint.torch, "cuda", fake)
    state = checkpoint.rng_state()
    assert torch.equal(state["cuda"], torch.full((8,), 1, dtype=torch.uint8))


def test_restore_on_fewer_gpus_including_older_checkpoints(monkeypatch):
    random.seed(3)
    saver = FakeCuda(n=2, current=0)
    monkeypatch.setattr(checkpoint.torch, "cuda", saver)
    new = checkpoint.rng_state()
    old = {**new, "cuda": saver.get_rng_state_all()}  # the format of checkpoints written before the fix
    expected_python = random.random()

    for saved in (new, old):
        loader = FakeCuda(n=1, current=0)  # a 1-GPU resume of the 2-GPU run's rank 0
        monkeypatch.setattr(checkpoint.torch, "cuda", loader)
        checkpoint.set_rng_state(saved)
        assert len(loader.set) == 1 and torch.equal(loader.set[0], torch.zeros(8, dtype=torch.uint8))
        assert random.random() == expected_python  # the CPU-side generators are restored too
