"""FlexiDiT for diffusers' ``WanTransformer3DModel``: weak patch modes around an unmodified Wan transformer.

    wan = WanTransformer3DModel.from_pretrained("Wan2.1-T2V-1.3B-Diffusers", subfolder="transformer")
    flexi = FlexiWanTransformer(wan, lora_specs({"coarse_time": (2, 2, 2), "coarse_space": (1, 4, 4)}, rank=64))
    v = flexi(hidden_states=x, timestep=t, encoder_hidden_states=text, mode="coarse_space").sample

* ``full`` calls the wrapped transformer itself with every adapter disabled: bit-identical to the original.
* Modes are flexivid's ``ModeSpec`` table run by the generic mode component (``models.modes.ModeAdapters``:
  adapters, activation, merged stacks, trainable sets); ``lora_specs`` is in ``models.modes``.
* A weak mode gets its own Conv3d patch embedding and ``proj_out`` de-embedding, initialised from Wan's by the
  same projections as flexivid's DiT (``models.patching``), a zero mode embedding, and one peft LoRA on the
  self-attention (``attn1.to_q/k/v/out.0``) and FFN linears of every block; cross-attention stays frozen.
* Rotary positions sit at base-grid coordinates: a coarse token is placed at the centre of the base tokens it
  covers. Wan builds its RoPE from integer positions, so weak grids get their own tables with fractional centres,
  computed like Wan's (float64 angles, interleaved cos/sin).
* Odd latent frame counts (81 frames -> 21 latent frames): the first latent frame stays out of coarse-time tokens,
  as Wan's VAE is causal (``layout``: why, and the error where neither grouping applies).

Sampling with diffusers' own ``WanPipeline``: ``pipe.transformer = flexi`` and ``flexi.set_schedule(spec, steps)``.
The pipeline announces each call's branch and step through ``cache_context("cond" | "uncond", step_index=i)``;
the conditional branch runs ``schedule.cond[i]`` and the unconditional one ``schedule.guide[i]`` (plain CFG; the
weak-to-strong guide of flexivid's own pipeline needs a conditional guide, which WanPipeline does not run).
``flexi.flops_fraction()`` reports the FLOPs of the calls made since ``set_schedule`` against full.
"""
from __future__ import annotations

import contextlib
import functools
import math

import torch
from torch import nn

from ..diffusion.schedules import PatchSchedule, parse_schedule
from ..models.modes import FULL, ModeAdapters, ModeSpec, flexify
from ..models.patching import project_deembed, project_embed_kernel
from .host import FlexiHost
from .layout import Layout, Patch, layout_coordinates, num_tokens, segment_patch, segment_sizes, temporal_layout

# Self-attention and FFN linears of every block (flexivid's DiT adapts the same set).
LORA_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ffn.net.0.proj", "ffn.net.2")


@functools.lru_cache(maxsize=64)
def wan_rope(layout: Layout, patch: Patch, base: Patch, hw: tuple[int, int], head_dim: int, theta: float,
             device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's RoPE ``(cos, sin)``, each ``(1, N, 1, head_dim)`` float32, for the tokens of ``layout`` in order.

    ``hw`` is the latent's spatial size. Coordinates are in base tokens (``layout.layout_coordinates``); with the base
    patch they are Wan's integers and the tables equal ``WanRotaryPosEmbed``'s bit for bit.
    """
    h_dim = w_dim = 2 * (head_dim // 6)
    dims = (head_dim - h_dim - w_dim, h_dim, w_dim)
    pos = layout_coordinates(layout, patch, base, hw)  # (N, 3)
    angles = []
    for axis, d in enumerate(dims):
        freqs = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
        angles.append(torch.outer(pos[:, axis], freqs).repeat_interleave(2, dim=1))
    ang = torch.cat(angles, dim=1)
    with torch.inference_mode(False):
        return (ang.cos().float()[None, :, None].to(device), ang.sin().float()[None, :, None].to(device))


class FlexiWanTransformer(FlexiHost):
    """A ``WanTransformer3DModel`` with weak patch modes; see the module docstring.

    Args:
        transformer: the diffusers model (kept as ``self.transformer``; its weights are not changed).
        modes: weak mode name -> ``ModeSpec`` (or a bare patch: no adapter), each patch a multiple of Wan's base
            patch; added by ``models.modes.flexify``, so only what the modes add trains. ``lora_specs`` builds the
            usual table, e.g. ``lora_specs({"coarse_time": (2, 2, 2)}, rank=64)``.
        projection: ``paper`` or ``pinv`` (``models.patching.embed_projection``).
    """

    def __init__(self, transformer: nn.Module, modes: dict | None = None, projection: str = "paper"):
        super().__init__()
        self.transformer = transformer
        self.projection = projection
        self.base: Patch = tuple(int(p) for p in transformer.config.patch_size)
        self.embed = nn.ModuleDict()
        self.deembed = nn.ModuleDict()
        self.mode_embed = nn.ParameterDict()
        self.specs: dict[str, ModeSpec] = {}  # the mode table, shared with the mode component
        self.mode_adapters = ModeAdapters(self, self.specs, blocks="transformer.blocks", targets=LORA_TARGETS,
                                          mode_params=self._mode_layers)
        self.schedule: PatchSchedule | None = None
        self.calls: list[tuple[int, int]] = []  # (FLOPs, full-mode FLOPs) of each pipeline call since set_schedule
        self._call: tuple[str, int | None] | None = None
        if modes:
            flexify(self, modes)

    # ------------------------------------------------------------------------------------------ diffusers API
    @contextlib.contextmanager
    def cache_context(self, name: str, **kwargs):
        """Entered by diffusers pipelines around each call: remembers the branch and step for the schedule."""
        self._call = (name, kwargs.get("step_index"))
        try:
            with self.transformer.cache_context(name, **kwargs):
                yield
        finally:
            self._call = None

    # ------------------------------------------------------------------------------------------------ modes
    def add_mode(self, name: str, spec: ModeSpec) -> None:
        """Add a weak mode: embed / de-embed projected from Wan's, zero mode embedding, and its adapter."""
        patch = spec.patch
        if name == FULL or name in self.specs:
            raise ValueError(f"mode name '{name}' is taken (modes: {', '.join(self.modes)}); name weak modes "
                             f"e.g. coarse_time")
        if any(p % b for p, b in zip(patch, self.base)):
            raise ValueError(f"mode '{name}' patch {patch} must be a multiple of Wan's patch {self.base}")
        conv, lin = self.transformer.patch_embedding, self.transformer.proj_out
        c_out = lin.out_features // math.prod(self.base)
        embeds, deembeds = nn.ModuleDict(), nn.ModuleDict()
        kinds = {"body": patch, **({"first": (1, *patch[1:])} if patch[0] > 1 else {})}
        for kind, p in kinds.items():
            e = nn.Conv3d(conv.in_channels, conv.out_channels, p, stride=p).to(conv.weight.device, conv.weight.dtype)
            d = nn.Linear(lin.in_features, c_out * math.prod(p)).to(lin.weight.device, lin.weight.dtype)
            with torch.no_grad():
                e.weight.copy_(project_embed_kernel(conv.weight, self.base, p, self.projection))
                e.bias.copy_(conv.bias)
                # Wan orders proj_out features (pt, ph, pw, c); flexivid's projection takes (c, pt, ph, pw).
                w = lin.weight.unflatten(0, (*self.base, c_out)).permute(3, 0, 1, 2, 4).flatten(0, 3)
                b = lin.bias.unflatten(0, (*self.base, c_out)).permute(3, 0, 1, 2).flatten()
                w, b = project_deembed(w, b, c_out, self.base, p)
                d.weight.copy_(w.unflatten(0, (c_out, *p)).permute(1, 2, 3, 0, 4).flatten(0, 3))
                d.bias.copy_(b.unflatten(0, (c_out, *p)).permute(1, 2, 3, 0).flatten())
            embeds[kind], deembeds[kind] = e, d
        self.embed[name], self.deembed[name] = embeds, deembeds
        self.mode_embed[name] = nn.Parameter(torch.zeros(conv.out_channels, device=conv.weight.device,
                                                         dtype=conv.weight.dtype))
        self.mode_adapters.add(name, spec)

    def mode_parameters(self, mode: str) -> dict[str, nn.Parameter]:
        """Parameters owned by one weak mode: its LoRA and its own layers (``ModeAdapters.parameters_of``)."""
        return self.mode_adapters.parameters_of(mode)

    def compile_blocks(self) -> None:
        """Regional ``torch.compile`` of every block stack: Wan's and the merged copies (``mode_adapters.merge``)."""
        for stack in (self.transformer.blocks, *self.mode_adapters.merged.values()):
            for block in stack:
                block.compile(dynamic=False)

    def check_mode(self, mode: str) -> Patch:
        modes = self.modes
        if mode not in modes:
            raise ValueError(f"unknown mode {mode!r}; this model has modes: {', '.join(modes)}")
        return modes[mode]

    # -------------------------------------------------------------------------------------------- schedules
    def set_schedule(self, schedule: str | PatchSchedule | None, steps: int | None = None) -> None:
        """Run ``schedule`` (a ``diffusion.schedules`` spec or ``PatchSchedule``; None: always full) in the next
        pipeline calls, and reset the FLOPs record."""
        if isinstance(schedule, str):
            if steps is None:
                raise ValueError("a schedule spec needs steps= (the pipeline's num_inference_steps)")
            schedule = parse_schedule(schedule, steps, self.modes)
        if schedule is not None and not isinstance(schedule, PatchSchedule):
            raise ValueError(f"schedule '{schedule}' is adaptive (chosen per sample while sampling, VideoPipeline "
                             f"only); give the Wan integration a static schedule")
        for m in schedule.modes_used if schedule is not None else ():
            self.check_mode(m)
        self.schedule = schedule
        self.reset_flops()

    def scheduled_mode(self) -> str:
        """The mode of the call in progress: from the schedule and the pipeline's step context."""
        if self.schedule is None:
            return FULL
        if self._call is None or self._call[1] is None:
            raise ValueError("a patch schedule is set but the caller gave no step (cache_context(name, step_index=i)); "
                             "pass mode= explicitly or sample with a diffusers pipeline such as WanPipeline")
        branch, i = self._call
        if i >= self.schedule.steps:
            raise ValueError(f"step {i} is past the schedule's {self.schedule.steps} steps; set_schedule(spec, "
                             f"steps=num_inference_steps)")
        return (self.schedule.guide if branch == "uncond" else self.schedule.cond)[i]

    def reset_flops(self) -> None:
        self.calls = []

    def flops_fraction(self) -> float:
        """FLOPs of the pipeline calls (those inside ``cache_context``) since ``set_schedule`` / ``reset_flops``, over
        the same calls in ``full``."""
        if not self.calls:
            raise ValueError("no pipeline call recorded since set_schedule/reset_flops")
        return sum(f for f, _ in self.calls) / sum(full for _, full in self.calls)

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None, return_dict: bool = True,
                attention_kwargs: dict | None = None, mode: str | None = None):
        """``WanTransformer3DModel.forward`` plus ``mode`` (default: the schedule's, else ``full``)."""
        mode = self.scheduled_mode() if mode is None else mode
        patch = self.check_mode(mode)
        shape = hidden_states.shape
        layout = temporal_layout(tuple(shape[2:]), patch, mode) if mode != FULL else ()
        if self._call is not None:  # a pipeline's call: record its cost for flops_fraction
            text_len = encoder_hidden_states.shape[1]
            self.calls.append((self.forward_flops(mode, shape[1:], text_len, shape[0]),
                               self.forward_flops(FULL, shape[1:], text_len, shape[0])))
        self.mode_adapters.activate(mode)
        if mode == FULL:
            return self.transformer(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image,
                                    return_dict=return_dict, attention_kwargs=attention_kwargs)
        out = self._forward_weak(hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image, mode,
                                 layout)
        if not return_dict:
            return (out,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=out)

    def _forward_weak(self, x, timestep, text, image, mode: str, layout) -> torch.Tensor:
        """Wan's forward with the mode's tokenizer, RoPE tables and de-tokenizer; x ``(B, C, T, H, W)``."""
        wan, patch = self.transformer, self.specs[mode].patch
        if timestep.ndim != 1:
            raise ValueError("weak modes take one timestep per sample (B,); per-token timesteps (Wan 2.2 TI2V) "
                             "run only in the full mode")
        hw = tuple(x.shape[3:])
        rope = wan_rope(layout, patch, self.base, hw, wan.config.attention_head_dim, 10000.0, str(x.device))
        tokens = torch.cat([self._embed(x[:, :, s:e], mode, kind) for s, e, kind in layout], 1)  # (B, N, D)
        tokens = tokens + self.mode_embed[mode].to(tokens.dtype)
        temb, tproj, text, image = wan.condition_embedder(timestep, text, image)  # (B, D), (B, 6D), (B, L, D)
        tproj = tproj.unflatten(1, (6, -1))
        if image is not None:
            text = torch.cat([image, text], dim=1)
        for block in self.mode_adapters.blocks_for(mode):
            if torch.is_grad_enabled() and wan.gradient_checkpointing:
                tokens = wan._gradient_checkpointing_func(block, tokens, text, tproj, rope)
            else:
                tokens = block(tokens, text, tproj, rope)
        shift, scale = (wan.scale_shift_table + temb[:, None]).chunk(2, dim=1)  # (B, 1, D) each
        tokens = (wan.norm_out(tokens.float()) * (1 + scale) + shift).type_as(tokens)
        return torch.cat([self._deembed(t, mode, kind, (e - s, *hw))
                          for t, (s, e, kind) in zip(tokens.split(segment_sizes(layout, patch, hw), 1), layout)], dim=2)

    def _embed(self, x: torch.Tensor, mode: str, kind: str) -> torch.Tensor:
        """``x (B, C, t, H, W)`` -> tokens ``(B, n, D)`` in (t, h, w) raster order."""
        return self.embed[mode][kind](x).flatten(2).transpose(1, 2)

    def _deembed(self, tokens: torch.Tensor, mode: str, kind: str, thw) -> torch.Tensor:
        """tokens ``(B, n, D)`` -> video ``(B, C, t, H, W)`` (Wan's unpatchify: features ordered pt, ph, pw, c)."""
        lin = self.deembed[mode][kind]
        pt, ph, pw = segment_patch(self.specs[mode].patch, kind)
        t, h, w = thw
        y = lin(tokens).reshape(tokens.shape[0], t // pt, h // ph, w // pw, pt, ph, pw, -1)
        return y.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(tokens.shape[0], -1, t, h, w)

    # ------------------------------------------------------------------------------------------------ FLOPs
    def num_tokens(self, mode: str, latent_thw) -> int:
        return num_tokens(self.check_mode(mode), tuple(latent_thw), mode)

    def forward_flops(self, mode: str, latent_shape, text_len: int = 512, batch: int = 1) -> int:
        """FLOPs of one forward in ``mode`` (``wan_forward_flops``); adapters count while unmerged."""
        patch = self.check_mode(mode)
        return wan_forward_flops(self.config, patch, latent_shape, text_len, batch, self.mode_adapters.lora_rank(mode))


def wan_forward_flops(config, patch: Patch, latent_shape, text_len: int = 512, batch: int = 1,
                      lora_rank: int = 0) -> int:
    """FLOPs of one Wan forward, 2 per multiply-accumulate; matmuls and attention only (as ``models.flops``).

    ``config``: the ``WanTransformer3DModel`` config; ``latent_shape``: ``(C, T, H, W)``; ``text_len``: text tokens
    (WanPipeline pads prompts to 512); ``lora_rank``: an unmerged LoRA on the adapted linears (0: none / merged).
    """
    c, t, h, w = latent_shape
    n = num_tokens(tuple(patch), (t, h, w))
    d, f, dt = config.num_attention_heads * config.attention_head_dim, config.ffn_dim, config.text_dim
    mm = lambda rows, din, dout: 2 * rows * din * dout  # noqa: E731
    # Every latent element is in exactly one token: the embed costs 2 * C_in * T*H*W * D, the de-embed likewise.
    total = 2 * (c + (config.out_channels or c)) * t * h * w * d
    total += mm(1, config.freq_dim, d) + mm(1, d, d) + mm(1, d, 6 * d) + mm(text_len, dt, d) + mm(text_len, d, d)
    per_block = (mm(n, d, 3 * d) + 4 * n * n * d + mm(n, d, d)  # self-attention
                 + mm(n, d, d) + mm(text_len, d, 2 * d) + 4 * n * text_len * d + mm(n, d, d)  # cross-attention
                 + mm(n, d, f) + mm(n, f, d))  # FFN
    if lora_rank:
        per_block += sum(mm(n, a, lora_rank) + mm(n, lora_rank, b) for a, b in ((d, d),) * 4 + ((d, f), (f, d)))
    return batch * (total + config.num_layers * per_block)
