"""tools/eval_modes.py: held-out weak-vs-full MSE before (flexify init) and after (trained adapters)."""
import pytest
import json

import torch

from test_benchmark import _tiny_export

pytestmark = pytest.mark.slow  # multi-process or end-to-end runs


def test_untrained_adapters_give_equal_before_and_after(tmp_path):
    """A freshly flexified export *is* the flexify init, so before == after exactly; changing an adapter moves it."""
    import tools.eval_modes as em
    from flexivid.models.serialization import load_model, read_spec, save_model

    ckpt = _tiny_export(tmp_path / "m")
    assert em.main(["--checkpoint", str(ckpt), "--num-clips", "2", "--output", str(tmp_path / "r.json")]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert res["before"] == res["after"] and all(v > 0 for v in res["before"].values())

    m = load_model(ckpt)
    for n, p in m.mode_adapters.parameters_of("coarse_time").items():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    save_model(m, tmp_path / "m2", read_spec(ckpt))
    assert em.main(["--checkpoint", str(tmp_path / "m2"), "--num-clips", "2", "--output", str(tmp_path / "r2.json")]) == 0
    res2 = json.loads((tmp_path / "r2.json").read_text())
    assert res2["after"]["coarse_time"] != res2["before"]["coarse_time"]
    assert res2["after"]["coarse_space"] == res2["before"]["coarse_space"]


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    import tools.eval_modes as em

    assert em.main(["--checkpoint", str(tmp_path / "none")]) == 2
    assert "no exported flexivid model" in capsys.readouterr().err
