"""Training faults with real processes: a taken port, a diverging run, a SIGKILL in the middle of a save, resumes
whose newest checkpoint is gone or truncated. Each must end in one error line or a resume that says what it did,
with nothing non-finite saved and every step logged once."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_utils import REPO, build_stub_cache, read_log, tiny_pretrain_config, write_config

TRAIN = "tools/train.py"
pytestmark = pytest.mark.slow  # real training processes


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return build_stub_cache(tmp_path_factory.mktemp("cache") / "cache.safetensors")


def test_port_taken_is_one_line(cache, tmp_path):
    """Two launches on one host: the second finds the rendezvous port taken and says which flag picks another."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        write_config(tmp_path / "run.yaml", tiny_pretrain_config(tmp_path / "out", cache))
        env = {**os.environ, "PYTHONPATH": str(REPO), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1"}
        proc = subprocess.run([sys.executable, str(REPO / TRAIN), "--config", str(tmp_path / "run.yaml")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"port {port}" in errors[0] and "--master_port" in errors[0]
    assert not (tmp_path / "out" / "ckpt").exists()


def _strict_json(line: str) -> dict:
    def refuse(constant):
        raise ValueError(f"non-JSON constant {constant}")
    return json.loads(line, parse_constant=refuse)


def _train(cfg: Path, *args: str, pre: str = "") -> subprocess.CompletedProcess:
    """tools/train.py as one plain process; ``pre``: python run first in that process (fault injection)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="2")
    code = (f"import runpy, sys\n{pre}\nsys.argv = ['train.py', '--config', {str(cfg)!r}, *{list(args)!r}]\n"
            f"runpy.run_path({str(REPO / TRAIN)!r}, run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def _train_steps(out: Path) -> list[int]:
    return [r["step"] for r in (_strict_json(x) for x in (out / "log.jsonl").read_text().splitlines())
            if r["event"] == "train"]


def test_divergence_stops_with_the_last_good_checkpoint(cache, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", tiny_pretrain_config(tmp_path / "out", cache, steps=8, ckpt_every=2,
                                                                   lr=1e6))
    proc = _train(cfg)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "training diverged at step" in errors[0], proc.stderr[-2000:]
    ckpt = tmp_path / "out" / "ckpt"
    last = (ckpt / "latest").read_text().strip()
    assert f"last good checkpoint: {ckpt / last}" in errors[0]
    records = [_strict_json(x) for x in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]  # strict JSON
    stop = records[-1]
    assert stop["event"] == "diverged" and stop["last_good_checkpoint"] == last
    assert int(last.removeprefix("step")) < stop["step"] and f"step {stop['step']}" in errors[0]
    assert all(math.isfinite(r["loss"]) for r in records if r["event"] == "train")
    assert sorted(d.name for d in ckpt.iterdir() if d.is_dir())[-1] == last  # nothing saved after it
    for name, t in load_file(tmp_path / "out" / "export" / "model.safetensors").items():
        assert torch.isfinite(t).all(), name


@pytest.fixture(scope="module")
def complete_run(cache, tmp_path_factory):
    """A 6-step run with checkpoints at 2, 4 and 6 (all kept)."""
    tmp = tmp_path_factory.mktemp("complete")
    cfg = write_config(tmp / "run.yaml", tiny_pretrain_config(tmp / "out", cache, steps=6, ckpt_every=2,
                                                              keep_checkpoints=3))
    proc = _train(cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cfg, tmp / "out"


KILL_IN_SAVE = """
import os, signal, torch
_save = torch.save
def save(obj, f, *a, **k):
    _save(obj, f, *a, **k)
    if 'step0000004' in str(f) and 'optim_states' in str(f):  # half of step 4's optimizer file, then SIGKILL
        os.truncate(f, os.path.getsize(f) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
torch.save = save
"""


def test_kill_during_save_then_resume(complete_run, tmp_path):
    """SIGKILL in the middle of writing step 4: `latest` still names step 2; the resume redoes 3-6, logs each once."""
    cfg, full = complete_run
    out = tmp_path / "out"
    killed = _train(cfg, "--output", str(out), pre=KILL_IN_SAVE)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (out / "ckpt" / "latest").read_text().strip() == "step0000002"
    assert _train_steps(out) == [1, 2, 3, 4]
    resumed = _train(cfg, "--output", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "warning: resuming from" not in resumed.stderr  # latest was complete: no fallback needed
    assert _train_steps(out) == [1, 2, 3, 4, 5, 6]  # the killed run's steps 3-4 were dropped, not repeated
    assert (out / "ckpt" / "latest").read_text().strip() == "step0000006"
    a, b = load_file(full / "export" / "model.safetensors"), load_file(out / "export" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # exact resume holds


@pytest.mark.parametrize("damage", ["folder_deleted", "optimizer_truncated"])
def test_resume_falls_back_to_the_newest_complete_checkpoint(complete_run, tmp_path, damage):
    cfg, full = complete_run
    out = tmp_path / "out"
    shutil.copytree(full, out)
    step6 = out / "ckpt" / "step0000006"
    if damage == "folder_deleted":
        shutil.rmtree(step6)
    else:
        optim = next(step6.glob("*optim_states.pt"))
        os.truncate(optim, optim.stat().st_size // 3)
    proc = _train(cfg, "--output", str(out), "--resume", "--steps", "7")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    warning = [x for x in proc.stderr.splitlines() if x.startswith("warning: resuming from")]
    assert len(warning) == 1 and "step0000004" in warning[0] and "step0000006" in warning[0], proc.stderr[-2000:]
    assert [r["start_step"] for r in read_log(out) if r["event"] == "start"] == [0, 4]
    assert _train_steps(out) == [1, 2, 3, 4, 5, 6, 7]
    assert (out / "ckpt" / "latest").read_text().strip() == "step0000007"
