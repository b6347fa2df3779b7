"""Sampling with diffusers' own WanPipeline and the flexified transformer swapped in (tiny random Wan and VAE)."""
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel  # noqa: E402

from flexivid.integrations.wan import FlexiWanTransformer  # noqa: E402
from flexivid.models.modes import lora_specs  # noqa: E402

TINY = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
            text_dim=32, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=64)


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True]).eval()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, transformer=WanTransformer3DModel(**TINY).eval(),
                       scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call(pipe, steps=4):
    g = torch.Generator().manual_seed(3)
    text, negative = torch.randn(1, 10, 32, generator=g), torch.randn(1, 10, 32, generator=g)
    # 9 frames -> 3 latent frames (odd, as Wan's 81 -> 21); 32 x 32 -> 4 x 4 latents
    return pipe(prompt_embeds=text, negative_prompt_embeds=negative, height=32, width=32, num_frames=9,
                num_inference_steps=steps, guidance_scale=5.0, output_type="pt",
                generator=torch.Generator().manual_seed(0)).frames


@pytest.mark.slow  # end to end: 4 pipeline runs
def test_wan_pipeline_full_bit_identical_then_a_weak_schedule(pipe):
    original = pipe.transformer
    ref = call(pipe)
    flexi = FlexiWanTransformer(original, lora_specs({"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}, 4))
    try:
        pipe.transformer = flexi
        assert torch.equal(call(pipe), ref)  # no schedule: every call is full
        flexi.set_schedule("full", steps=4)
        assert torch.equal(call(pipe), ref)
        assert flexi.flops_fraction() == 1.0

        flexi.set_schedule("coarse_space:1,coarse_time:1,full:2", steps=4)
        video = call(pipe)
        assert video.shape == ref.shape == (1, 9, 3, 32, 32) and torch.isfinite(video).all()
        assert not torch.equal(video, ref)
        latent = (16, 3, 4, 4)
        cost = {m: flexi.forward_flops(m, latent, 10) for m in ("full", "coarse_time", "coarse_space")}
        want = 2 * (cost["coarse_space"] + cost["coarse_time"] + 2 * cost["full"]) / (8 * cost["full"])
        assert flexi.flops_fraction() == pytest.approx(want) and flexi.flops_fraction() < 1
        assert len(flexi.calls) == 8  # 4 steps x (cond, uncond)

        flexi.set_schedule("full", steps=3)
        with pytest.raises(ValueError, match="step 3 is past the schedule's 3 steps"):
            call(pipe)
        with pytest.raises(ValueError, match="no step"):
            flexi(torch.zeros(1, 16, 3, 4, 4), torch.tensor([1.0]), torch.zeros(1, 10, 32))
    finally:
        pipe.transformer = original


@pytest.mark.slow  # end to end: the benchmark's --smoke size
def test_benchmark_wan_smoke(tmp_path):
    import json

    from tools.benchmark_wan import main

    assert main(["--smoke", "--output", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "wan_benchmark.json").read_text())
    assert [m["mode"] for m in r["modes"]] == ["full", "coarse_time", "coarse_space"]
    assert [m["tokens"] for m in r["modes"]] == [80, 16 + 32, 20]  # 5 latent frames: frame 0 alone in coarse_time
    assert r["schedules"][0]["real_s"] > 0 and r["schedules"][1]["real_s"] is None
    assert all(0 < s["flops_fraction"] < 1 for s in r["schedules"]) and r["full"]["real_s"] > 0
    assert "| coarse_space |" in (tmp_path / "wan_benchmark.md").read_text()
