"""tools/flexify.py: converts an exported base model, with clear errors."""
import pytest
import subprocess
import sys

import torch

from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.serialization import load_model, save_model

from conftest import randomize_zero_init

pytestmark = pytest.mark.slow  # multi-process or end-to-end runs


def _run(*args):
    return subprocess.run([sys.executable, "tools/flexify.py", *args], capture_output=True, text=True)


def test_flexify_cli_converts_and_keeps_full_mode(tiny_cfg, tmp_path):
    base = randomize_zero_init(FlexiVideoDiT(tiny_cfg))
    save_model(base, tmp_path / "base")
    r = _run("--checkpoint", str(tmp_path / "base"), "--modes", "coarse_time", "coarse_hw=1,8,8",
             "--lora-rank", "4", "--output", str(tmp_path / "flex"))
    assert r.returncode == 0, r.stderr
    assert "trainable parameters" in r.stdout
    flex = load_model(tmp_path / "flex")
    assert flex.modes == {"full": (1, 2, 2), "coarse_time": (2, 2, 2), "coarse_hw": (1, 8, 8)}
    x, t = torch.randn(1, 3, 2, 8, 8), torch.rand(1)
    assert torch.equal(flex(x, t, None, None, "full"), base(x, t, None, None))


def test_flexify_cli_errors_are_one_line(tmp_path):
    r = _run("--checkpoint", str(tmp_path / "missing"), "--output", str(tmp_path / "o"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no exported flexivid model" in r.stderr


def test_flexify_keeps_metadata_and_never_replaces_a_model_unasked(tiny_cfg, tmp_path):
    """text / autoencoder / clip / provenance travel to the output; the input is replaced only with --overwrite."""
    from flexivid.config import AutoencoderConfig, TextConfig
    from flexivid.models.serialization import ClipConfig, ExportSpec, read_spec

    spec = ExportSpec(text=TextConfig(encoder="minilm", max_length=12), autoencoder=AutoencoderConfig(kind="pixel"),
                      clip=ClipConfig(4, 16, 16, 6.0), provenance={"stage": "pretrain", "step": 7})
    save_model(randomize_zero_init(FlexiVideoDiT(tiny_cfg)), tmp_path / "base", spec)
    before = {f.name: f.read_bytes() for f in (tmp_path / "base").iterdir() if f.is_file()}
    r = _run("--checkpoint", str(tmp_path / "base"), "--modes", "coarse_time", "--lora-rank", "4",
             "--output", str(tmp_path / "flex"))
    assert r.returncode == 0, r.stderr
    out = read_spec(tmp_path / "flex")
    assert (out.text, out.autoencoder, out.clip, out.provenance) == (spec.text, spec.autoencoder, spec.clip,
                                                                     spec.provenance)
    refused = _run("--checkpoint", str(tmp_path / "base"), "--output", str(tmp_path / "base"))
    assert refused.returncode == 2 and "is the --checkpoint itself" in refused.stderr
    assert {f.name: f.read_bytes() for f in (tmp_path / "base").iterdir() if f.is_file()} == before
    again = _run("--checkpoint", str(tmp_path / "base"), "--modes", "coarse_time", "--lora-rank", "4",
                 "--output", str(tmp_path / "base"), "--overwrite")
    assert again.returncode == 0, again.stderr
    assert set(load_model(tmp_path / "base").modes) == {"full", "coarse_time"}
    assert read_spec(tmp_path / "base").text == spec.text
