"""VideoPipeline on a tiny random model: seeding, shapes, FLOPs bookkeeping, progress, and up-front validation."""
import pytest
import torch

from flexivid.autoencoders import PixelAutoencoder
from flexivid.config import ModelConfig
from flexivid.diffusion.schedules import flops_fraction, parse_schedule
from flexivid.models.dit import FlexiVideoDiT
from flexivid.pipeline import PipelineDefaults, VideoPipeline

from conftest import randomize_zero_init

MODES = {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}
CLIP = dict(num_frames=4, height=16, width=16, steps=3)


class StubTextEncoder:
    """Deterministic per-prompt tokens, padded to 6 with a word-count mask (MiniLM's contract, no model)."""

    dim, max_length = 16, 6

    def encode(self, prompts):
        tokens = torch.zeros(len(prompts), self.max_length, self.dim)
        mask = torch.zeros(len(prompts), self.max_length, dtype=torch.bool)
        for i, p in enumerate(prompts):
            n = min(len(p.split()), self.max_length)
            g = torch.Generator().manual_seed(sum(map(ord, p)))
            tokens[i, :n] = torch.randn(n, self.dim, generator=g)
            mask[i, :n] = True
        return tokens, mask


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    model = randomize_zero_init(FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=16, modes=dict(MODES))))
    return VideoPipeline(model, StubTextEncoder(), PixelAutoencoder(), PipelineDefaults(num_frames=4, height=16,
                                                                                        width=16, steps=3))


def test_seeds_shapes_and_info(pipe):
    video, info = pipe(["a red ball", "blue sky"], schedule="interleaved:1:1", seed=3, progress=False, **CLIP)
    assert video.shape == (2, 3, 4, 16, 16) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1
    assert info["seeds"] == [3, 4] and info["order"] == "coarse_space:1,coarse_time:1,full:1"
    assert info["modes"][0] == ["coarse_space", "coarse_space"] and info["wall_clock_s"] > 0
    sched = parse_schedule("interleaved:1:1", 3, pipe.model.modes)
    assert info["flops_fractions"][0] == flops_fraction(sched, pipe.model.config, pipe.model.modes, (3, 4, 16, 16), 3)
    again, _ = pipe(["a red ball", "blue sky"], schedule="interleaved:1:1", seed=3, progress=False, **CLIP)
    assert torch.equal(video, again)
    # A prompt's video depends on its own seed only, not on the batch it ran in.
    alone, _ = pipe(["blue sky"], schedule="interleaved:1:1", seed=4, progress=False, **CLIP)
    assert torch.allclose(alone[0], video[1], atol=1e-5)
    other, _ = pipe(["a red ball"], schedule="interleaved:1:1", seed=5, progress=False, **CLIP)
    assert not torch.allclose(other[0], video[0], atol=1e-2)


def test_batches_and_weak_to_strong(pipe):
    spec = "weak_first:coarse_space:2/0"  # steps 2-3: full conditional + weak conditional guide
    video, info = pipe(["a b", "c d e", "f"], schedule=spec, seed=[7, 8, 9], batch_size=2, progress=False, **CLIP)
    assert video.shape[0] == 3 and info["step_kinds"] == ["cfg", "weak_to_strong", "weak_to_strong"]
    assert info["weak_guidance_scale"] == pytest.approx(1 - (1 - info["guidance_scale"]) / 2.5)
    single, _ = pipe(["f"], schedule=spec, seed=9, progress=False, **CLIP)
    assert torch.allclose(single[0], video[2], atol=1e-5)
    plain, info = pipe(["f"], schedule=spec, seed=9, progress=False, weak_to_strong=False, **CLIP)
    assert info["step_kinds"] == ["cfg"] * 3 and not torch.allclose(plain, single, atol=1e-3)


def test_compute_budget_without_a_table_runs_fewer_full_steps(pipe):
    assert pipe.calibration is None
    video, info = pipe("a small green square", compute=0.7, progress=False, **CLIP)
    # the fallback rule: full@floor(0.7 x 3); FLOPs as a fraction of full at the requested 3 steps
    assert (info["schedule"], info["steps"]) == ("full", 2) and info["flops_fraction"] == pytest.approx(2 / 3)
    assert "fallback rule fewer full steps" in info["budget_rule"]


def test_compute_budget_takes_the_best_measured_recipe(pipe):
    from flexivid.calibration import Calibration, Entry

    good = [0.9, 0.8, 0.7, 0.85] * 8
    pipe.calibration = Calibration("fidelity", True, 3, [4, 16, 16], [
        Entry("full@3", "full", 3, 4.0, 1.0, 0.9, 0.88, 0.92, {"b1": 1.0}, [g + 0.1 for g in good]),
        Entry("w@2", "weak_first:coarse_time:1", 2, 2.0, 0.5, 0.8, 0.78, 0.82, {"b1": 0.6}, good),
        Entry("full@1", "full", 1, 4.0, 1 / 3, 0.5, 0.45, 0.55, {"b1": 0.3}, [g - 0.3 for g in good])])
    try:
        _, info = pipe("a small green square", compute=0.5, progress=False, **CLIP)
        assert (info["schedule"], info["steps"], info["guidance_scale"]) == ("weak_first:coarse_time:1", 2, 2.0)
        assert info["flops_fraction"] < 0.5 and "best measured fidelity" in info["budget_rule"]
        _, info = pipe("a small green square", compute=0.5, guidance_scale=3.0, progress=False, **CLIP)
        assert info["guidance_scale"] == 3.0  # the caller's scale wins over the table's
        with pytest.raises(ValueError, match="leave steps unset"):
            pipe("a small green square", compute=0.5, progress=False, **{**CLIP, "steps": 5})
    finally:
        pipe.calibration = None


def test_progress_bar_shows_the_mode(pipe, capsys):
    pipe("a b", schedule="coarse_time:1,full:2", progress=True, **CLIP)
    err = capsys.readouterr().err
    assert "mode=coarse_time" in err and "mode=full" in err


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_frames=3, schedule="coarse_time:1,full:2"),
     r"num_frames=3 is not divisible by 2 \(mode 'coarse_time' temporal patch 2 x autoencoder temporal factor 1\); "
     r"valid num_frames: multiples of 2, e.g. 2 or 4"),
    (dict(height=18, schedule="coarse_space:1,full:2"), "height=18 is not divisible by 4"),
    (dict(width=15), "width=15 is not divisible by 2 .*mode 'full'"),
    (dict(schedule="blurry:3"), "unknown mode 'blurry'.*full, coarse_time, coarse_space"),
    (dict(compute=0.01), "below one full step of 3"),
    (dict(schedule="full", compute=0.5), "not both"),
    (dict(prompts=["ok", "  "]), "prompt 1 is empty"),
    (dict(prompts=[]), "no prompts"),
    (dict(guidance_scale=0.5), "guidance_scale must be >= 1"),
    (dict(seed=[1, 2]), "2 seeds for 1 prompts"),
])
def test_validation_is_up_front_and_one_line(pipe, kwargs, match):
    args = {**CLIP, "prompts": ["a red ball"], "progress": False, **kwargs}
    with pytest.raises(ValueError, match=match) as e:
        pipe(**args)
    assert "\n" not in str(e.value)


def test_budget_skips_modes_that_do_not_fit(pipe):
    # 3 frames do not fit coarse_time's temporal patch 2: the budget search uses the other modes only.
    _, info = pipe("a b", num_frames=3, height=16, width=16, steps=3, compute=0.6, progress=False)
    assert all("coarse_time" not in pair for pair in info["modes"])


def test_merged_adapters_match_peft_and_drop_adapter_flops():
    import copy

    from flexivid.models.modes import flexify, lora_specs

    torch.manual_seed(0)
    base = randomize_zero_init(FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=16)))
    flex = flexify(base, lora_specs(dict(MODES), 4))
    for mode in MODES:  # trained-like, non-zero adapters
        for n, p in flex.mode_adapters.parameters_of(mode).items():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05)
    merged = copy.deepcopy(flex)
    merged.mode_adapters.merge()
    kw = dict(CLIP, schedule="coarse_space:1,coarse_time:1,full:1", seed=3)
    runs = [VideoPipeline(m, StubTextEncoder(), PixelAutoencoder())(["a red circle"], **kw) for m in (flex, merged)]
    (v_peft, i_peft), (v_merged, i_merged) = runs
    assert torch.allclose(v_merged, v_peft, atol=1e-4)
    assert i_merged["flops_fraction"] < i_peft["flops_fraction"]  # the peft path's adapter matmuls are counted


def test_precomputed_embeddings_and_shards(pipe):
    prompts = ["a red ball", "blue sky", "c d e"]
    video, info = pipe(prompts, schedule="interleaved:1:1", seed=3, progress=False, **CLIP)
    tokens, mask = pipe.text_encoder.encode(prompts)
    same, _ = pipe(prompt_embeds=tokens, prompt_mask=mask, schedule="interleaved:1:1", seed=3, progress=False, **CLIP)
    assert torch.equal(same, video)
    # a data-parallel process generates prompts i % world == rank, with their own seeds and the same schedule
    part, pinfo = pipe(prompts, schedule="interleaved:1:1", seed=3, progress=False, shard=(1, 2), **CLIP)
    assert pinfo["indices"] == [1] and pinfo["seeds"] == [4] and pinfo["schedule"] == info["schedule"]
    assert torch.allclose(part[0], video[1], atol=1e-5)
    with pytest.raises(ValueError, match="prompt embeddings must be"):
        pipe(prompt_embeds=tokens[..., :3], progress=False, **CLIP)
