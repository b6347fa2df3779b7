"""What a graphed sampling call does outside its steps (``eval.call_profile``): the work that does not depend on the
step count is done once per call at most, and what can be made once per pipeline is not redone per call.

On the CPU the steps run eagerly on the graphs' static buffers; every aten op the host dispatches is counted per
phase. A host read (``.item()``, ``bool(t)``, ``.tolist()``) waits for the GPU there; the one read a call makes is on
the host-side prompt mask (its valid lengths)."""
import torch

import flexivid.pipeline as pipeline_module
from flexivid.diffusion.graphed import StepGraphs
from flexivid.eval.call_profile import call_counts, host_reads

from test_graphed import CLIP, PROMPTS, _pipe


def _counts(pipe, schedule="interleaved:1:1"):
    """Op counts of a call on precomputed prompt embeddings (the text encoder's own ops stay out of the counts)."""
    pipe.sampling = "graphed"
    text, mask = pipe.text_encoder.encode(PROMPTS)
    return call_counts(pipe, lambda: pipe(PROMPTS, seed=1, progress=False, schedule=schedule, prompt_embeds=text,
                                          prompt_mask=mask, **CLIP))


def test_call_outside_its_steps_does_no_per_call_rebuild(monkeypatch):
    pipe = _pipe(lora=True)
    pipe._graphs = StepGraphs(pipe.model, backend="none")
    flops_calls = []
    fraction = pipeline_module.flops_fraction
    monkeypatch.setattr(pipeline_module, "flops_fraction", lambda *a, **k: flops_calls.append(1) or fraction(*a, **k))
    first = _counts(pipe)  # call_counts warms up with one call, then counts the second
    # the FLOPs of a request: once per distinct prompt length (the two prompts differ), then kept
    assert first["n_steps"] == CLIP["steps"] and len(flops_calls) == len(PROMPTS)
    before, steps, after = first["before"], first["steps"], first["after"]
    # one host read in the whole call: the prompt lengths, read from the mask before it goes to the device
    assert (host_reads(before), host_reads(steps), host_reads(after)) == (1, 0, 0), (before, after)
    # the sigma table is made once per (steps, shift, device), not once per call
    assert before["linspace"] == 0 and before["stack"] == 1  # the stack: the batch's noise, one row per seed
    # inputs go once into the static buffers (text, mask, noise, the first (t, t_next)), the text encoding once into
    # the static encodings, and the null text once into the CFG pair's dropped rows (drop_text)
    assert before["copy_"] == 4 + _encoder_copies(pipe) + 1
    # after the steps: the result is clamped out of the static buffer (no copy before), no batch of one concatenated
    assert after["clone"] == 0 and after["clamp"] == 1 and after["cat"] == 0
    pool = pipe._pool
    again = _counts(pipe)
    assert again["before"] == before and pipe._pool is pool and len(flops_calls) == len(PROMPTS)


def _encoder_copies(pipe) -> int:
    """Copies of the once-per-call text encoding into the static encodings the steps read."""
    from flexivid.diffusion.graphed import _tensors

    buf = next(iter(pipe._graphs.buffers.values()))
    return sum(len(_tensors(args)) for args in buf.prompt.cache.values())


def test_outputs_do_not_depend_on_the_tables_being_shared():
    """Two schedules with the same step count share the cached sigma table; a call outside inference mode reads it."""
    from flexivid.diffusion.scheduler import FlexiScheduler

    pipe = _pipe()
    a, _ = pipe(PROMPTS, seed=1, progress=False, schedule="full", **CLIP)
    s = FlexiScheduler(pipe.model.modes)
    s.set_timesteps(CLIP["steps"])
    assert not s.sigmas.is_inference() and s.sigmas[0] == 1 and s.sigmas[-1] == 0
    assert torch.equal(s.sigma_pairs[:, 0], s.sigmas[:-1]) and torch.equal(s.sigma_pairs[:, 1], s.sigmas[1:])
    x = s.step(torch.ones(1), s.timesteps[0], torch.zeros(1))  # autograd-visible use outside inference mode
    assert torch.allclose(x, s.sigmas[1:2] - 1)
    b, _ = pipe(PROMPTS, seed=1, progress=False, schedule="full", **CLIP)
    assert torch.equal(a, b)
