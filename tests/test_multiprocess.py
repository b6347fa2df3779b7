"""Several processes on the CPU (gloo): 4-rank ZeRO-2, 2-rank ZeRO-3, a resume on another process count, and the
scaling report of tools/multigpu_scaling.sh. Runs are tiny (a few steps of 256-token clips); 4 processes on 2
cores are slow, so that run takes 3 steps."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from train_utils import REPO, build_stub_cache, read_log, run_train, tiny_pretrain_config, write_config

from flexivid.training.batches import StepSampler
from flexivid.training.scaling_report import report, scaling_table, split_runs, steady_throughput, summarize

pytestmark = pytest.mark.slow  # multi-process or end-to-end runs

K = 3  # steps before the cross-count resume


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return build_stub_cache(tmp_path_factory.mktemp("cache") / "cache.safetensors")


def _losses(log: list[dict]) -> list[float]:
    return [r["loss"] for r in log if r["event"] == "train"]


def test_four_rank_zero2(cache, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", tiny_pretrain_config(tmp_path / "out", cache, steps=3, ckpt_every=3))
    proc = run_train(cfg, nproc=4)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = read_log(tmp_path / "out")
    assert log[0]["world_size"] == 4 and log[0]["zero_stage"] == 2
    losses = _losses(log)
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert log[-1]["replicas_identical"] and len(set(log[-1]["replica_fingerprints"])) == 1
    assert len(log[-1]["replica_fingerprints"]) == 4


def test_two_rank_zero3_export_matches_shards(cache, tmp_path):
    """ZeRO-3 (chosen with --deepspeed-config): with ema_decay 0 the export must equal the sharded live weights."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from flexivid import load_model

    out = tmp_path / "out"
    cfg = write_config(tmp_path / "run.yaml", tiny_pretrain_config(out, cache, steps=3, ckpt_every=3, ema_decay=0.0))
    proc = run_train(cfg, "--deepspeed-config", "ds_configs/zero3.json", nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = read_log(out)
    start = log[0]
    assert start["world_size"] == 2 and start["zero_stage"] == 3
    assert start["trainable_params"] == start["total_params"] > 0  # counted before ZeRO-3 partitions them
    assert "trainable parameters: 0 of 0" not in proc.stdout
    assert len(_losses(log)) == 3 and all(math.isfinite(x) for x in _losses(log))
    assert log[-1]["replicas_identical"] is None  # one sharded copy: nothing to compare across ranks
    # The live weights reassembled from both ranks' shards (their module is wrapped by the objective as `model.`).
    shards = get_fp32_state_dict_from_zero_checkpoint(str(out / "ckpt"), tag="step0000003")
    exported = load_file(out / "export" / "model.safetensors")
    assert exported.keys() == {k.removeprefix("model.") for k in shards}
    for k, v in shards.items():
        assert torch.equal(exported[k.removeprefix("model.")], v), k
    model = load_model(out / "export")
    y = model(torch.randn(1, 3, 4, 16, 16), torch.tensor([0.5]), torch.randn(1, 3, 32))
    assert y.shape == (1, 3, 4, 16, 16) and torch.isfinite(y).all()


@pytest.fixture(scope="module")
def saved_on_two(cache, tmp_path_factory):
    """A 2-rank ZeRO-2 run of K steps (checkpoint at K)."""
    tmp = tmp_path_factory.mktemp("cross")
    cfg = write_config(tmp / "run.yaml", tiny_pretrain_config(tmp / "out", cache, steps=K, ckpt_every=K))
    proc = run_train(cfg, nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, cfg, read_log(tmp / "out")


def test_sampler_continues_the_stream_on_another_world_size():
    """2 ranks for K steps, then 1 rank from sample K * 4: every clip of the epoch exactly once, in stream order."""
    n, micro = 40, 2
    two = [StepSampler(n, 7, micro, 1, 2, r, 0, K) for r in range(2)]
    stream = [i for step in range(K) for s in two for i in s.indices(step, 0)]
    one = StepSampler(n, 7, micro, 1, 1, 0, K, K + (n - K * 4) // micro, start_sample=K * 4)
    stream += [i for batch in one for i in batch]
    assert stream == [int(i) for i in two[0]._permutation(0)]
    assert list(StepSampler(n, 7, micro, 1, 2, 1, K, 2 * K, start_sample=K * 4)) == list(
        StepSampler(n, 7, micro, 1, 2, 1, K, 2 * K))  # the same world size: the default position


def test_resume_with_another_zero_stage_is_a_one_line_error(saved_on_two):
    """A ZeRO-2 checkpoint resumed under ZeRO-3 stops before launch, naming both stages and the fix."""
    _, cfg, _ = saved_on_two
    proc = run_train(cfg, "--resume", "--deepspeed-config", "ds_configs/zero3.json")
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "written with ZeRO-0/1/2" in err[0] and "ZeRO-3" in err[0], proc.stderr[-2000:]
    assert "--deepspeed-config ds_configs/zero2.json" in err[0]


def test_resume_on_one_process_restores_the_two_rank_state(saved_on_two):
    """2 ranks -> 1: the universal checkpoint gives back the same weights and EMA (a finished run: nothing to train)."""
    tmp, cfg, saved = saved_on_two
    ema_before = load_file(tmp / "out" / "export" / "model.safetensors")
    proc = run_train(cfg, "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("warning: resuming")]
    assert len(warnings) == 1 and "2-rank checkpoint of step 3 on 1 rank(s)" in warnings[0], proc.stdout
    resumed = split_runs(read_log(tmp / "out"))[-1]
    assert resumed[0]["start_step"] == K and resumed[0]["checkpoint_world_size"] == 2
    assert resumed[-1]["replica_fingerprints"] == saved[-1]["replica_fingerprints"][:1]  # the live weights
    ema_after = load_file(tmp / "out" / "export" / "model.safetensors")
    assert all(torch.equal(ema_before[k], ema_after[k]) for k in ema_before)
    assert (tmp / "out" / "ckpt" / "universal" / "step0000003" / "zero").is_dir()


def test_resume_on_one_process_continues_training(saved_on_two):
    """...then on to 2K steps: the step counter and the data position continue, the loss stays finite."""
    tmp, cfg, _ = saved_on_two
    proc = run_train(cfg, "--resume", "--steps", str(2 * K))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = split_runs(read_log(tmp / "out"))[-1]
    assert run[0]["start_step"] == K and run[0]["world_size"] == 1
    assert run[0]["start_sample"] == K * 2 * 2  # K steps x micro-batch 2 x 2 ranks already consumed
    losses = _losses(run)
    assert len(losses) == K and all(math.isfinite(x) for x in losses)
    ckpt = tmp / "out" / "ckpt"
    assert (ckpt / "latest").read_text().strip() == "step0000006"
    assert not (ckpt / "universal").exists()  # stale once a checkpoint of the new world size is published
    assert len(list((ckpt / "step0000006").glob("*optim_states.pt"))) == 1
    client = torch.load(ckpt / "step0000006" / "mp_rank_00_model_states.pt", weights_only=False)
    assert client["data_position"] == {"step": 6, "samples_seen": K * 4 + K * 2} and client["world_size"] == 1


# ------------------------------------------------------------------------------------------------ scaling report
def _synthetic_log(world: int, zero: int, per_gpu: float, steps=(10, 20, 30, 35), mem=3.0) -> list[dict]:
    """A log.jsonl of a run at ``per_gpu`` samples/s per GPU, with a slow first interval and a short last one."""
    recs = [{"event": "start", "world_size": world, "zero_stage": zero, "precision": "bf16", "start_step": 0}]
    batch = 32 * world
    for i, step in enumerate(steps):
        rate = per_gpu * world / (4 if i == 0 else 1)  # warm-up interval 4x slower: must not count
        recs.append({"event": "train", "step": step, "loss": 1.0 / step, "steps_per_s": rate / batch,
                     "samples_per_s": rate, "gpu_mem_gb": mem + i})
    return recs + [{"event": "end", "step": steps[-1]}]


def test_steady_throughput_skips_the_first_interval():
    rate, measured = steady_throughput(_synthetic_log(2, 2, 100.0))
    assert rate == pytest.approx(200.0) and measured == 25
    assert steady_throughput(_synthetic_log(1, 2, 100.0, steps=(10,))) is None


def test_scaling_table_and_report(tmp_path):
    rows = [summarize("z2_1gpu", _synthetic_log(1, 2, 100.0)), summarize("z2_4gpu", _synthetic_log(4, 2, 90.0)),
            summarize("z3_4gpu", _synthetic_log(4, 3, 50.0))]
    assert rows[1]["samples_per_s"] == pytest.approx(360.0) and rows[1]["peak_mem_gb"] == 6.0
    table = scaling_table(rows).splitlines()
    assert "| z2_4gpu | 2 | 4 | bf16 | 360.0 | 90.0 | 90% | 6.00 | 25 | 0.0286 |" in table
    assert table[-1].split(" | ")[6] == "n/a"  # no 1-GPU ZeRO-3 run to compare with
    logs = {}
    for name, recs in (("z2_1gpu", _synthetic_log(1, 2, 100.0)), ("z2_4gpu", _synthetic_log(4, 2, 90.0))):
        logs[name] = tmp_path / f"{name}.jsonl"
        logs[name].write_text("".join(json.dumps(r) + "\n" for r in recs))
    resumed = _synthetic_log(1, 2, 100.0, steps=(40, 45))
    resumed[0].update(start_step=35, start_sample=35 * 128, checkpoint_world_size=4)
    (tmp_path / "resume.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _synthetic_log(4, 2, 90.0) + resumed))
    text = report({**logs, "z3_4gpu": tmp_path / "absent.jsonl"}, tmp_path / "resume.jsonl", "H100 x 4")
    assert text.startswith("# DeepSpeed scaling on H100 x 4") and "| z2_4gpu | 2 | 4 |" in text
    assert "Missing (the run failed; see its output): z3_4gpu" in text
    assert "to step 35 (last loss 0.0286); resumed on 1 GPU(s) from its 4-rank checkpoint at sample 4480" in text
    assert "losses after the resume: 0.0250, 0.0222 (all finite); ended at step 45" in text


def test_scaling_script_is_wired():
    """tools/multigpu_scaling.sh launches tools/train.py with flags that exist."""
    script = (REPO / "tools" / "multigpu_scaling.sh").read_text()
    from tools.train import parse_args

    args = parse_args(["--config", "c.yaml", "--steps", "60", "--output", "o", "--deepspeed-config",
                       "ds_configs/zero3.json", "--resume"])
    assert args.deepspeed_config == "ds_configs/zero3.json" and args.resume and args.output == "o"
    for flag in ("--steps", "--output", "--deepspeed-config", "--resume", "-m deepspeed.launcher.runner"):
        assert flag in script, flag
