"""FlexiDiT distillation (stage: distill): weak modes learn to match the frozen full mode, only adapters + new layers
train, the export reproduces the trained network, and a resumed run is bit-exact."""
import pytest
import torch
from safetensors.torch import load_file
from train_utils import TEXT_DIM, build_stub_cache, copy_checkpoint, read_log, run_train, write_config

from flexivid.config import DataConfig, ModelConfig
from flexivid.data.synthetic import SyntheticVideoDataset
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.modes import flexify, lora_specs
from flexivid.models.serialization import load_model, save_model
from flexivid.text import CachedTextEncoder
from flexivid.training.losses import DiffusionObjective

pytestmark = pytest.mark.slow  # multi-process or end-to-end runs

MODES = {"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}
RANK = 8


def distill_config(base, cache, out, **train):
    return {
        "stage": "distill", "seed": 0,
        "data": {"num_frames": 4, "height": 16, "width": 16, "num_clips": 64},
        "text": {"encoder": "cache", "cache_path": str(cache), "max_length": 8},
        "distill": {"base_checkpoint": str(base), "modes": {k: list(v) for k, v in MODES.items()}, "lora_rank": RANK},
        "train": {"steps": 200, "micro_batch_size": 4, "lr": 3e-3, "log_every": 20, "ckpt_every": 100,
                  "keep_checkpoints": 5, "ema_decay": 0.0, "out_dir": str(out), **train},
    }


def pretrain_base(cache, steps: int = 100) -> FlexiVideoDiT:
    """A tiny base briefly trained on the flow loss (a random network is no meaningful teacher)."""
    torch.manual_seed(0)
    model = FlexiVideoDiT(ModelConfig(preset="tiny", text_dim=TEXT_DIM, patch_size=(1, 2, 2)))
    x0, text, mask = clips(cache, "train", 64)
    objective = DiffusionObjective(model, "flow", "logit_normal", caption_dropout=0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x0), (8,), generator=g)
        loss = objective(x0[idx], text[idx], mask[idx], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distill")
    cache = build_stub_cache(tmp / "cache.safetensors")
    save_model(pretrain_base(cache), tmp / "base")
    cfg = write_config(tmp / "distill.yaml", distill_config(tmp / "base", cache, tmp / "out"))
    proc = run_train(cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, cfg


def flexified_base(tmp):
    return flexify(load_model(tmp / "base", modes=[]), lora_specs(dict(MODES), RANK))


def clips(cache, split: str, n: int):
    """``n`` synthetic clips of ``split`` -> x0 (n, 3, 4, 16, 16), text (n, 8, TEXT_DIM), mask (n, 8)."""
    ds = SyntheticVideoDataset(DataConfig(num_frames=4, height=16, width=16, num_clips=n, split=split))
    items = [ds[i] for i in range(n)]
    text, mask = CachedTextEncoder(str(cache)).encode([it["caption"] for it in items])
    return torch.stack([it["video"] for it in items]), text, mask


@torch.no_grad()
def held_out_mse(model, cache) -> dict[str, float]:
    """Weak-vs-full prediction MSE per weak mode on test-split clips (unseen caption combinations), fixed noise."""
    x0, text, mask = clips(cache, "test", 16)
    objective = DiffusionObjective(model, "distill", "uniform", caption_dropout=0.0)
    return {m: objective(x0, text, mask, torch.Generator().manual_seed(0), m).item() for m in MODES}


def test_distillation_lowers_held_out_weak_vs_full_mse(run):
    tmp, _ = run
    before = held_out_mse(flexified_base(tmp), tmp / "cache.safetensors")
    after = held_out_mse(load_model(tmp / "out" / "export"), tmp / "cache.safetensors")
    for m in MODES:
        assert after[m] < 0.8 * before[m], (m, before, after)


def test_only_adapters_and_new_layers_train(run):
    tmp, _ = run
    model = flexified_base(tmp)
    expected = set()
    for m in MODES:
        expected |= {f"mode_embed.{m}", f"patch_embed.proj.{m}.weight", f"patch_embed.proj.{m}.bias",
                     f"deembed.linear.{m}.weight", f"deembed.linear.{m}.bias"}
        for i in range(2):  # tiny preset: 2 blocks
            for layer in ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
                expected |= {f"blocks.{i}.{layer}.lora_{ab}.{m}.weight" for ab in "AB"}
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(trainable) == expected
    start = read_log(tmp / "out")[0]
    assert start["trainable_params"] == sum(p.numel() for p in trainable.values())
    assert start["trainable_params"] < start["total_params"]


def test_export_reproduces_trained_network_and_full_mode_is_untouched(run):
    tmp, _ = run
    state = torch.load(tmp / "out" / "ckpt" / "step0000200" / "mp_rank_00_model_states.pt", weights_only=False)
    trained = flexified_base(tmp)
    trained.load_state_dict({k.removeprefix("model."): v for k, v in state["module"].items()})
    exported = load_model(tmp / "out" / "export")
    base = load_model(tmp / "base")
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(2, 3, 4, 16, 16, generator=g), torch.rand(2, generator=g)
    text, mask = torch.randn(2, 8, TEXT_DIM, generator=g), torch.ones(2, 8, dtype=torch.bool)
    with torch.no_grad():
        for m in ("full", *MODES):
            assert torch.equal(exported(x, t, text, mask, mode=m), trained(x, t, text, mask, mode=m)), m
        assert torch.equal(exported(x, t, text, mask, mode="full"), base(x, t, text, mask))  # LoRA off in full


def test_distill_resume_is_bit_exact(run, tmp_path):
    tmp, cfg = run
    copy_checkpoint(tmp / "out", tmp_path / "resumed", 100)
    proc = run_train(cfg, "--resume", "--output", str(tmp_path / "resumed"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("model.safetensors", "adapters/coarse_time.safetensors", "adapters/coarse_space.safetensors"):
        a, b = load_file(tmp / "out" / "export" / name), load_file(tmp_path / "resumed" / "export" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_shared_weights_variant_trains_everything(run, tmp_path):
    tmp, _ = run
    raw = distill_config(tmp / "base", tmp / "cache.safetensors", tmp_path / "shared", steps=4, ckpt_every=4)
    raw["distill"]["shared_weights"] = True
    proc = run_train(write_config(tmp_path / "shared.yaml", raw))
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = read_log(tmp_path / "shared")[0]
    assert start["trainable_params"] == start["total_params"] and set(start["modes"]) == {"full", *MODES}
    model = load_model(tmp_path / "shared" / "export")
    assert model.mode_adapters.lora_modes == () and set(model.modes) == {"full", *MODES}


def test_zero3_distillation_matches_zero2(run, tmp_path):
    """Modes alternate between steps, so each step leaves the other mode's LoRA without a gradient. DeepSpeed ZeRO-3
    would re-apply that LoRA's previous gradient (its flat gradient buffer is not cleared); the trainer clears it, so
    the losses equal ZeRO-2's step for step."""
    tmp, _ = run
    losses = {}
    for stage in (2, 3):
        out = tmp_path / f"z{stage}"
        cfg = write_config(tmp_path / f"z{stage}.yaml", distill_config(tmp / "base", tmp / "cache.safetensors", out,
                                                                       steps=8, log_every=1, ckpt_every=100))
        proc = run_train(cfg, "--deepspeed-config", f"ds_configs/zero{stage}.json")
        assert proc.returncode == 0, proc.stderr[-3000:]
        log = [r for r in read_log(out) if r["event"] == "train"]
        losses[stage] = [r["loss"] for r in log]
        modes = [next(iter(r["loss_by_mode"])) for r in log]
    assert len(set(modes)) == 2 and any(a != b for a, b in zip(modes, modes[1:])), modes  # the modes do alternate
    assert losses[3] == pytest.approx(losses[2], rel=1e-5, abs=1e-7)
