"""Turn a trained base FlexiVideoDiT into a flexible one (FlexiDiT's LoRA variant, method.md sections 1-2).

``flexify(model, {"coarse_time": (2,2,2), "coarse_space": (1,4,4)}, lora_rank=64)``:

* adds each weak mode: PI-projected embed and de-embed, zero mode embedding (``FlexiVideoDiT.add_mode``);
* injects one peft LoRA adapter per weak mode, named after the mode, on the self-attention (qkv, proj) and MLP
  (fc1, fc2) linears of every block; cross-attention and everything else stay frozen;
* marks trainable exactly the adapters and the new per-mode embed / de-embed / mode embedding.

The ``full`` mode has no adapter: running it disables every adapter, so its output is bit-identical to the model
before flexify. Selecting a weak mode activates exactly its adapter (``activate_mode``).
"""
from __future__ import annotations

import copy
import warnings

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.lora import LoraLayer

from .dit import FlexiVideoDiT

LORA_TARGETS = r"blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"


def lora_layers(model: torch.nn.Module) -> list[LoraLayer]:
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def flexify(model: FlexiVideoDiT, modes: dict, lora_rank: int = 64, lora_alpha: float | None = None,
            shared_weights: bool = False) -> FlexiVideoDiT:
    """Add weak ``modes`` (name -> patch) to ``model`` in place and return it.

    With ``shared_weights=True`` no adapters are added and every parameter stays trainable (the paper's
    shared-parameter variant, for users who own the training data); otherwise see the module docstring.
    """
    if not modes:
        raise ValueError("flexify needs at least one weak mode, e.g. {'coarse_time': (2, 2, 2)}")
    for name, patch in modes.items():
        if name == "full":
            raise ValueError("'full' is the base mode and cannot be added; name weak modes e.g. coarse_time")
        model.add_mode(name, patch)
    if shared_weights:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    for p in model.parameters():
        p.requires_grad_(False)
    for name in modes:
        cfg = LoraConfig(r=lora_rank, lora_alpha=lora_alpha or lora_rank, target_modules=LORA_TARGETS,
                         lora_dropout=0.0, init_lora_weights=True)
        with warnings.catch_warnings():  # peft warns that a second adapter is added: that is the design here
            warnings.simplefilter("ignore", UserWarning)
            inject_adapter_in_model(cfg, model, adapter_name=name)
    model.lora_modes = tuple(model.lora_modes) + tuple(modes)
    model.lora_rank = lora_rank
    model.lora_alpha = float(lora_alpha or lora_rank)
    for name in modes:
        for p in mode_parameters(model, name).values():
            p.requires_grad_(True)
    model._trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    activate_mode(model, "full")
    return model


def mode_parameters(model: FlexiVideoDiT, mode: str) -> dict[str, torch.nn.Parameter]:
    """Parameters that belong to one weak mode only: its LoRA adapter, embed, de-embed and mode embedding."""
    return {n: p for n, p in model.named_parameters()
            if f"lora_A.{mode}." in n or f"lora_B.{mode}." in n or n == f"mode_embed.{mode}"
            or n.startswith((f"patch_embed.proj.{mode}.", f"deembed.linear.{mode}."))}


def activate_mode(model: FlexiVideoDiT, mode: str) -> None:
    """Enable exactly ``mode``'s adapter (none for modes without one, e.g. ``full``).

    peft's ``set_adapter`` / ``enable_adapters`` also flip ``requires_grad``; the trainable set chosen by
    ``flexify`` is restored afterwards so an optimizer built once keeps seeing the same parameters.
    """
    if not model.lora_modes or getattr(model, "_active_mode", None) == mode:
        return
    for layer in lora_layers(model):
        if mode in model.lora_modes:
            layer.enable_adapters(True)
            layer.set_adapter(mode)
        else:
            layer.enable_adapters(False)
    trainable = getattr(model, "_trainable", set())
    for n, p in model.named_parameters():
        p.requires_grad_(n in trainable)
    model._active_mode = mode


def merge_adapters(model: FlexiVideoDiT) -> None:
    """Inference: give each LoRA mode its own block stack with that mode's LoRA folded into the linears.

    peft runs two extra small matmuls (and their launches) per adapted linear: on the H100 that made a compiled
    coarse step 45% slower than the same step with merged weights (``tools/profile_modes.py``). Each stack is a copy
    of the block weights (the small model: 27 MiB per mode in bf16). The merge is done in float32, then cast back.
    The stacks are not submodules (state_dict, exports and ``.to()`` ignore them): call this after the model has its
    device and dtype. ``full`` keeps ``model.blocks`` with every adapter disabled, so it stays bit-identical.
    """
    dtype = next(model.blocks.parameters()).dtype
    stacks = {}
    for mode in model.lora_modes:
        blocks = copy.deepcopy(model.blocks).float()
        _fold_lora(blocks, mode)
        stacks[mode] = blocks.to(dtype).requires_grad_(False).eval()
    activate_mode(model, "full")  # the base blocks now serve only full: adapters off for good
    model.merged_stacks = stacks


def trainable_summary(model: torch.nn.Module) -> str:
    """One log line: trainable / total parameters."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable parameters: {train:,} of {total:,} ({100 * train / max(total, 1):.2f}%)"


def merged_copy(model: FlexiVideoDiT, mode: str) -> FlexiVideoDiT:
    """A plain FlexiVideoDiT whose linears hold ``mode``'s LoRA merged in (zero-overhead inference for that mode).

    The copy keeps every mode's embed / de-embed, but its trunk is specialised: run it only in ``mode``.
    """
    m = copy.deepcopy(model)
    activate_mode(m, mode)
    _fold_lora(m, mode if mode in m.lora_modes else None)
    m.lora_modes, m.merged_stacks = (), {}
    return m


def _fold_lora(module: torch.nn.Module, mode: str | None) -> None:
    """Replace every peft LoRA layer in ``module`` by its base linear, with ``mode``'s adapter merged in (None: none)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, layer in list(module.named_modules()):
        if isinstance(layer, LoraLayer):
            if mode is not None:
                layer.merge(adapter_names=[mode])
            parent, leaf = name.rsplit(".", 1)
            setattr(module.get_submodule(parent), leaf, layer.get_base_layer())
    assert not any(isinstance(x, BaseTunerLayer) for x in module.modules())
