"""The graphed sampling loop (diffusion.graphed) gives the eager loop's videos, and the forward has no host sync.

On the CPU the ``trace`` backend compiles each step with ``fullgraph=True`` (any ``.item()``, ``bool(tensor)`` or
boolean-mask index in the step fails it, as it fails a CUDA graph capture) and runs the same kernels as eager, so
the videos must be bit-identical. The ``gpu`` test captures real CUDA graphs and compares in bf16.
"""
import pytest
import torch

from flexivid.autoencoders import PixelAutoencoder
from flexivid.config import ModelConfig
from flexivid.diffusion.graphed import StepGraphs
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.modes import flexify, lora_specs
from flexivid.pipeline import PipelineDefaults, VideoPipeline

from conftest import randomize_zero_init
from test_pipeline import MODES, StubTextEncoder

CLIP = dict(num_frames=4, height=16, width=16, steps=4)
PROMPTS = ["a red ball", "blue sky over the sea"]  # different valid lengths: the mask matters


def _pipe(lora: bool = False, device="cpu", dtype=torch.float32):
    torch.manual_seed(0)
    if lora:  # the shipped layout: LoRA modes, merged into their own block stacks
        model = FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=16))
        flexify(model, lora_specs(dict(MODES), 4))
    else:
        model = FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=16, modes=dict(MODES)))
    model = randomize_zero_init(model).to(device, dtype).requires_grad_(False)
    if lora:
        model.mode_adapters.merge()
    return VideoPipeline(model, StubTextEncoder(), PixelAutoencoder(), PipelineDefaults(**{
        k: CLIP[k] for k in ("num_frames", "height", "width", "steps")}))


def _video(pipe, sampling, backend=None, **kw):
    pipe.sampling = sampling
    if backend is not None:
        pipe._graphs = StepGraphs(pipe.model, backend=backend)
    video, info = pipe(PROMPTS, seed=1, progress=False, **CLIP, **kw)
    assert info["sampling"] == sampling
    return video


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["full", "interleaved:1:1", "weak_first:coarse_time:2"])
@pytest.mark.parametrize("lora", [False, True])
def test_traced_steps_equal_eager_bitwise(schedule, lora):
    pipe = _pipe(lora)
    eager = _video(pipe, "eager", schedule=schedule)
    traced = _video(pipe, "graphed", "trace", schedule=schedule)
    assert torch.equal(traced, eager)
    # a second call reuses the cached graphs and buffers
    assert torch.equal(_video(pipe, "graphed", schedule=schedule), eager)
    assert len(pipe._graphs.buffers) == 1


@pytest.mark.slow
def test_compiled_step_stops_at_the_block_stack():
    """The step compiled around the block stack (``compile=``; Inductor on the GPU, the eager backend here) runs the
    same ops as the eager loop; the blocks stay outside its graphs."""
    from torch._dynamo.utils import counters

    pipe = _pipe(lora=True)
    eager = _video(pipe, "eager", schedule="interleaved:1:1")
    counters.clear()
    pipe._graphs = StepGraphs(pipe.model, backend="none", compile="eager")
    pipe.sampling = "graphed"
    video, info = pipe(PROMPTS, seed=1, progress=False, schedule="interleaved:1:1", **CLIP)
    assert torch.equal(video, eager) and info["sampling"] == "graphed"
    breaks = [k for k in counters["graph_break"] if "_blocks_forward" in k or "disable" in k]
    assert breaks and sum(counters["graph_break"].values()) == sum(counters["graph_break"][k] for k in breaks)
    with pytest.raises(ValueError, match="already compiles"):
        StepGraphs(pipe.model, backend="trace", compile="eager")


@pytest.mark.slow
def test_no_guidance_and_mixed_modes():
    pipe = _pipe()
    eager = _video(pipe, "eager", schedule="full", guidance_scale=1.0)
    assert torch.equal(_video(pipe, "graphed", "trace", schedule="full", guidance_scale=1.0), eager)
    # weak-to-strong steps: the graph runs the two branches as two calls, eager packs them into one row
    spec = "weak_first:coarse_space:3/1"
    eager = _video(pipe, "eager", schedule=spec)
    graphed = _video(pipe, "graphed", "trace", schedule=spec)
    assert torch.allclose(graphed, eager, atol=1e-5, rtol=0)
    assert not torch.equal(eager, _video(pipe, "eager", schedule="full"))  # the comparison can fail


@pytest.mark.slow
def test_traced_model_forward_has_no_host_sync():
    model = _pipe().model
    x = torch.randn(2, 3, 4, 16, 16)
    t = torch.rand(2)
    text = torch.randn(2, 5, 16)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    fn = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)
    with torch.inference_mode():
        for mode in model.modes:
            assert torch.equal(fn(x, t, text, mask, mode), model(x, t, text, mask, mode))
            assert torch.equal(fn(x, t, None, None, mode), model(x, t, None, None, mode))


def test_bad_backend_and_empty_mask():
    pipe = _pipe()
    with pytest.raises(ValueError, match="unknown graph backend"):
        StepGraphs(pipe.model, backend="nope")
    with pytest.raises(ValueError, match="needs the model on a CUDA device"):
        StepGraphs(pipe.model, backend="cuda")
    pipe.sampling = "fast"
    with pytest.raises(ValueError, match="unknown sampling"):
        pipe(PROMPTS, progress=False, **CLIP)

    class Empty(StubTextEncoder):
        def encode(self, prompts):
            tokens, mask = super().encode(prompts)
            return tokens, torch.zeros_like(mask)
    pipe.sampling, pipe.text_encoder = "auto", Empty()
    with pytest.raises(ValueError, match="no valid token"):
        pipe(PROMPTS, progress=False, **CLIP)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("schedule", ["full", "interleaved:1:1", "weak_first:coarse_space:3/1"])
def test_cuda_graphs_equal_eager(schedule):
    """bf16 on the GPU: graph replay runs the captured kernels, so it matches eager to bf16 rounding (2e-2 on
    videos in [-1, 1]; identical kernels usually make it exact)."""
    pipe = _pipe(lora=True, device="cuda", dtype=torch.bfloat16)
    eager = _video(pipe, "eager", schedule=schedule)
    graphed = _video(pipe, "graphed", "cuda", schedule=schedule)
    assert (graphed - eager).abs().max() <= 2e-2
    assert torch.equal(_video(pipe, "graphed", schedule=schedule), graphed)  # replay is deterministic


@pytest.mark.slow
def test_equivalence_check_runs_on_the_cpu():
    """The speed suite's equivalence rows (eval.equivalence): on the CPU the step compiled with the eager backend and
    the capture emulated by ``trace`` both give the eager loop's videos bit for bit, text encoded once per call."""
    from flexivid.eval.equivalence import equivalence, equivalence_markdown

    pipe = _pipe(lora=True)
    pipe.compile_steps = "eager"
    rows = equivalence(pipe, PROMPTS, [("interleaved:1:1", 4), ("full", 4)], log=lambda _: None)
    assert [(r["schedule"], r["variant"]) for r in rows] == [
        (s, v) for s in ("interleaved:1:1@4", "full@4", "full@1") for v in ("graphed, step compiled",
                                                                             "graphed, step eager")]
    assert all(r["bitwise"] and r["max_abs"] == 0 for r in rows), [(r["variant"], r["max_abs"]) for r in rows]
    assert {r["backend"] for r in rows} == {"none", "trace"} and pipe.sampling == "auto"
    assert "must be" not in "\n".join(equivalence_markdown(rows))
    assert "must be" in "\n".join(equivalence_markdown([{**rows[1], "bitwise": False}]))
