"""Patch modes: the typed mode table and the model-owned component that runs it (the only module importing peft).

A **mode** is a named patch size. ``full`` is the transformer's own (base) patch; every other, weak, mode is
described by one ``ModeSpec``::

    ModeSpec(patch=(2, 2, 2), adapter="lora", rank=32)     # a per-mode LoRA on a frozen base (flexify's default)
    ModeSpec(patch=(1, 4, 4), adapter="shared")            # the paper's shared-weights variant: no adapter,
                                                           # every parameter trains
    ModeSpec(patch=(1, 4, 4))                              # adapter="none": base weights, nothing trains

``ModeAdapters`` owns everything about modes that is not a tensor op of the host model, for ANY transformer whose
blocks live in one ``nn.ModuleList``::

    ctl = ModeAdapters(model, config.modes, blocks="blocks",      # config.modes: {name: ModeSpec}, kept by reference
                       targets=("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),  # linears in each block to adapt
                       mode_params=lambda mode: {...})      # the host's own per-mode parameters (embeds, ...)
    ctl.add("coarse_time", spec)   # add to the table; inject a peft LoRA named after the mode if spec is lora
    ctl.freeze_base()              # trainable = the adapters + mode_params of the added modes (shared: all)
    ctl.freeze_all()               # inference: nothing trains
    ctl.activate(mode)             # enable exactly mode's adapter (none for full); keeps the trainable set
    ctl.blocks_for(mode)           # the block stack to run: mode's merged copy after merge(), else the base stack
    ctl.merge()                    # inference: one LoRA-merged copy of the blocks per lora mode (fp32 merge)
    flexify(model, specs)          # host.add_mode(name, spec) for each spec, then freeze_base()
    ctl.parameters_of(mode)        # {name: parameter} that belong to mode only (its LoRA + mode_params(mode))
    ctl.same_weights(a, b)         # whether two modes run the same block weights (so they may share one call)
    ctl.lora_rank(mode)            # rank of the unmerged LoRA that mode runs with (0: none, or merged)

For diffusers' ``WanTransformer3DModel``: ``blocks="blocks"``, ``targets=("attn1.to_q", "attn1.to_k",
"attn1.to_v", "attn1.to_out.0", "ffn.net.0.proj", "ffn.net.2")``.
"""
from __future__ import annotations

import copy
import re
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable

from torch import nn

FULL = "full"
ADAPTERS = ("none", "lora", "shared")


@dataclass(frozen=True)
class ModeSpec:
    """One weak mode: its patch ``(t, h, w)`` (a multiple of the base patch) and its adapter.

    ``adapter``: ``none`` (base weights), ``lora`` (a per-mode LoRA of ``rank``, scale ``alpha / rank``; alpha
    defaults to the rank) or ``shared`` (base weights, trained together with the base).
    """

    patch: tuple[int, int, int]
    adapter: str = "none"
    rank: int = 0
    alpha: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"a mode patch is three positive sizes (t, h, w), got {self.patch}")
        if self.adapter not in ADAPTERS:
            raise ValueError(f"unknown mode adapter {self.adapter!r}; allowed: {', '.join(ADAPTERS)}")
        if self.adapter == "lora" and self.rank < 1:
            raise ValueError(f"a lora mode needs rank >= 1, got {self.rank}")
        if self.adapter != "lora" and (self.rank or self.alpha is not None):
            raise ValueError(f"rank/alpha apply to lora modes only (adapter is {self.adapter!r})")
        if self.alpha is not None:
            object.__setattr__(self, "alpha", float(self.alpha))

    @property
    def scale_alpha(self) -> float:
        """LoRA alpha as peft takes it (the rank when not given, i.e. scale 1)."""
        return float(self.alpha if self.alpha is not None else self.rank)

    @classmethod
    def from_value(cls, value) -> "ModeSpec":
        """A ModeSpec from itself, a mapping ``{patch, adapter, rank, alpha}`` or a bare patch (adapter ``none``)."""
        if isinstance(value, ModeSpec):
            return value
        if isinstance(value, dict):
            unknown = set(value) - {"patch", "adapter", "rank", "alpha"}
            if unknown:
                raise ValueError(f"unknown mode key(s) {', '.join(sorted(unknown))}; allowed: patch, adapter, rank, "
                                 f"alpha")
            return cls(**value)
        return cls(tuple(value), adapter="none")


def lora_specs(patches: dict[str, Iterable[int]], rank: int, alpha: float | None = None,
               shared: bool = False) -> dict[str, ModeSpec]:
    """``{name: patch}`` -> ModeSpecs: one LoRA of ``rank`` per mode, or all ``shared`` (the paper's variant)."""
    if shared:
        return {m: ModeSpec(tuple(p), "shared") for m, p in patches.items()}
    return {m: ModeSpec(tuple(p), "lora", rank, alpha) for m, p in patches.items()}


class ModeAdapters:
    """Per-mode adapters, activation, merged stacks and trainable sets of one host model (see the module docstring).

    A plain object, not a submodule: the host's ``state_dict`` holds the LoRA weights (peft injects them into the
    target linears) and never the merged stacks.
    """

    def __init__(self, model: nn.Module, specs: dict[str, ModeSpec], blocks: str, targets: Iterable[str],
                 mode_params: Callable[[str], dict[str, nn.Parameter]] | None = None):
        """``specs`` is kept, not copied (pass the host config's table: it stays the one record of the modes); its
        lora modes get their adapters now."""
        self.model, self.specs, self.blocks_name = model, specs, blocks
        alts = "|".join(re.escape(t) for t in targets)
        self.target_regex = rf"{re.escape(blocks)}\.\d+\.({alts})"  # peft matches the whole module name
        self.mode_params = mode_params or (lambda mode: {})
        self.merged: dict[str, nn.ModuleList] = {}
        self.trainable: set[str] | None = None  # parameter names; None: activate() leaves requires_grad alone
        self.active: str | None = None
        for name, spec in specs.items():
            self._inject(name, spec)
        if self.lora_modes:  # a model built with adapters is in flexify's state: only what the modes add trains
            self.freeze_base()
        self.activate(FULL)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.model.get_submodule(self.blocks_name)

    @property
    def lora_modes(self) -> tuple[str, ...]:
        return tuple(m for m, s in self.specs.items() if s.adapter == "lora")

    # -------------------------------------------------------------------------------------------- building
    def add(self, name: str, spec: ModeSpec) -> None:
        """Record ``spec`` in the table; a lora mode gets a peft LoRA named ``name`` on every target linear."""
        if name == FULL or name in self.specs:
            raise ValueError(f"mode '{name}' already exists (modes: {', '.join([FULL, *self.specs])})")
        if self.merged:
            raise ValueError("add modes before merge(): merged stacks are for inference")
        self.specs[name] = spec
        self._inject(name, spec)
        self.activate(FULL)

    def _inject(self, name: str, spec: ModeSpec) -> None:
        if spec.adapter != "lora":
            return
        from peft import LoraConfig, inject_adapter_in_model

        cfg = LoraConfig(r=spec.rank, lora_alpha=spec.scale_alpha, target_modules=self.target_regex,
                         lora_dropout=0.0, init_lora_weights=True)
        with warnings.catch_warnings():  # peft warns when a second adapter is added: that is the design here
            warnings.simplefilter("ignore", UserWarning)
            inject_adapter_in_model(cfg, self.model, adapter_name=name)
        self.active = None  # the new adapter is active after injection: the next activate() must run

    def parameters_of(self, mode: str) -> dict[str, nn.Parameter]:
        """Parameters that belong to ``mode`` only: its LoRA and the host's ``mode_params(mode)``."""
        lora = (f"lora_A.{mode}.", f"lora_B.{mode}.")
        own = {n: p for n, p in self.model.named_parameters() if any(k in n for k in lora)}
        return {**own, **self.mode_params(mode)}

    def freeze_base(self) -> None:
        """Train only what the modes add: every lora mode's LoRA and the added modes' own parameters. A shared mode
        makes every parameter trainable."""
        if any(s.adapter == "shared" for s in self.specs.values()):
            names = {n for n, _ in self.model.named_parameters()}
        else:
            names = {n for m in self.specs for n in self.parameters_of(m)}
        self._set_trainable(names)

    def freeze_all(self) -> None:
        """Nothing trains (inference, exported models)."""
        self._set_trainable(set())

    def _set_trainable(self, names: set[str]) -> None:
        self.trainable = names
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in names)

    # ------------------------------------------------------------------------------------------- running
    def activate(self, mode: str) -> None:
        """Enable exactly ``mode``'s LoRA (none for other modes, e.g. ``full``).

        peft's ``set_adapter`` / ``enable_adapters`` also flip ``requires_grad``; the trainable set is restored so an
        optimizer built once keeps seeing the same parameters.
        """
        # after merge() the host's blocks serve only modes without a LoRA (adapters off for good): nothing to switch,
        # which keeps a traced or captured forward free of Python-side state changes
        if not self.lora_modes or self.active == mode or self.merged:
            return
        from peft.tuners.lora import LoraLayer

        lora = mode in self.lora_modes
        for layer in self.model.modules():
            if isinstance(layer, LoraLayer):
                layer.enable_adapters(lora)
                if lora:
                    layer.set_adapter(mode)
        if self.trainable is not None:
            for n, p in self.model.named_parameters():
                p.requires_grad_(n in self.trainable)
        self.active = mode

    def blocks_for(self, mode: str) -> nn.ModuleList:
        """The blocks ``mode`` runs: its merged copy after ``merge()``, else the host's (peft) blocks."""
        return self.merged.get(mode, self.blocks)

    def same_weights(self, a: str, b: str) -> bool:
        """Whether modes ``a`` and ``b`` run the same block weights, so their tokens may share one block call."""
        adapter = lambda m: m if m in self.lora_modes else None  # noqa: E731
        return adapter(a) == adapter(b)

    def lora_rank(self, mode: str) -> int:
        """Rank of the unmerged LoRA ``mode`` runs with: 0 for modes without one and for merged modes."""
        if mode not in self.lora_modes or mode in self.merged:
            return 0
        return self.specs[mode].rank

    # ------------------------------------------------------------------------------------------ inference
    def merge(self) -> None:
        """Give each lora mode its own copy of the blocks with its LoRA folded into the linears.

        Removes the two extra small matmuls per adapted linear at inference, at the cost of one block copy per mode.
        The merge runs in float32, then casts back. The copies are not submodules (state_dict, exports and ``.to()``
        ignore them): call this after the model has its device and dtype. ``full`` keeps the host's blocks with
        every adapter disabled, so it stays bit-identical.
        """
        blocks = self.blocks
        # Each tensor keeps its own dtype: a host may keep norms or modulation tables in float32 beside bf16 linears
        # (diffusers' _keep_in_fp32_modules).
        dtypes = {n.replace(".base_layer.", "."): t.dtype for n, t in [*blocks.named_parameters(),
                                                                      *blocks.named_buffers()] if "lora_" not in n}
        merged = {}
        for mode in self.lora_modes:
            stack = copy.deepcopy(blocks).float()
            _fold_lora(stack, mode)
            for n, t in [*stack.named_parameters(), *stack.named_buffers()]:
                t.data = t.data.to(dtypes[n])
            merged[mode] = stack.requires_grad_(False).eval()
        self.activate(FULL)
        self.merged = merged


def _fold_lora(module: nn.Module, mode: str) -> None:
    """Replace every peft LoRA layer in ``module`` by its base linear with ``mode``'s adapter merged in."""
    from peft.tuners.lora import LoraLayer

    for name, layer in list(module.named_modules()):
        if isinstance(layer, LoraLayer):
            layer.merge(adapter_names=[mode])
            parent, leaf = name.rsplit(".", 1)
            setattr(module.get_submodule(parent), leaf, layer.get_base_layer())


def flexify(model: nn.Module, specs: dict[str, ModeSpec]) -> nn.Module:
    """Add the weak modes ``specs`` to ``model`` in place and freeze its base; returns ``model``.

    ``model`` is a host with ``add_mode(name, spec)`` (its own per-mode layers, then ``mode_adapters.add``) and a
    ``mode_adapters`` component. After this only the modes' additions train (every parameter for shared modes);
    ``full`` runs with every adapter disabled, so it stays bit-identical to the model before.
    """
    if not specs:
        raise ValueError("flexify needs at least one weak mode, e.g. {'coarse_time': ModeSpec((2, 2, 2), 'lora', 32)}")
    for name, spec in specs.items():
        if name == FULL:
            raise ValueError("'full' is the base mode and cannot be added; name weak modes e.g. coarse_time")
        model.add_mode(name, ModeSpec.from_value(spec))
    model.mode_adapters.freeze_base()
    return model


def trainable_summary(model: nn.Module) -> str:
    """One log line: trainable / total parameters."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable parameters: {train:,} of {total:,} ({100 * train / max(total, 1):.2f}%)"
