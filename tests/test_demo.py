"""tools/demo.py: the weak and full videos of one prompt, never written over an earlier run's."""
import pytest
import torch

from flexivid.config import ModelConfig, TextConfig
from flexivid.models.dit import FlexiVideoDiT
from flexivid.models.modes import flexify, lora_specs
from flexivid.models.serialization import ClipConfig, ExportSpec, save_model

from conftest import randomize_zero_init

pytestmark = pytest.mark.slow  # loads MiniLM and writes videos: end to end

PROMPT = "a large red circle moves right slowly on a dark blue background"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    m = randomize_zero_init(FlexiVideoDiT(ModelConfig(preset="tiny", in_channels=3, text_dim=384)))
    flexify(m, lora_specs({"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}, 4))
    path = tmp_path_factory.mktemp("demo") / "model"
    save_model(m, path, ExportSpec(text=TextConfig(max_length=16), clip=ClipConfig(4, 16, 16, 8.0)))
    return path


def demo(ckpt, *extra):
    import tools.demo

    return tools.demo.main(["--prompt", PROMPT, "--schedule", "interleaved:1:1", "--steps", "3", "--checkpoint",
                            str(ckpt), *extra])


def test_default_names_never_replace_an_earlier_run(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert demo(checkpoint) == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "outputs").iterdir()}
    assert set(first) == {"demo.mp4", "demo_full.mp4"}
    assert "FlexiDiT speed-up, measured here" in capsys.readouterr().out
    (tmp_path / "outputs" / "demo-2_full.mp4").write_bytes(b"someone else's")  # a taken partner skips the pair
    assert demo(checkpoint) == 0
    files = {p.name: p.read_bytes() for p in (tmp_path / "outputs").iterdir()}
    assert set(files) == {"demo.mp4", "demo_full.mp4", "demo-2_full.mp4", "demo-3.mp4", "demo-3_full.mp4"}
    assert all(files[k] == v for k, v in first.items()) and files["demo-2_full.mp4"] == b"someone else's"


def test_explicit_output_is_refused_when_taken_unless_overwrite(checkpoint, tmp_path, capsys):
    out = tmp_path / "clip.gif"
    _full = tmp_path / "clip_full.gif"
    _full.write_bytes(b"keep")
    assert demo(checkpoint, "--output", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "clip_full.gif already exists" in err and "--overwrite" in err
    assert "\n" not in err and not out.exists() and _full.read_bytes() == b"keep"
    assert demo(checkpoint, "--output", str(out), "--overwrite") == 0
    assert out.stat().st_size > 0 and _full.read_bytes() != b"keep"
