"""FlexiDiT for diffusers' ``LTXVideoTransformer3DModel`` (LTX-Video): the second architecture on the same parts.

    ltx = LTXVideoTransformer3DModel.from_pretrained(LTX_FOLDER, subfolder="transformer")
    flexi = FlexiLTXTransformer(ltx, lora_specs({"coarse_space": (1, 2, 2)}, rank=64))
    v = flexi(hidden_states=packed, encoder_hidden_states=text, timestep=t, encoder_attention_mask=mask,
              num_frames=f, height=h, width=w, rope_interpolation_scale=scale, mode="coarse_space").sample

LTX takes packed tokens ``(B, F*H*W, C*pt*p*p)`` (LTX-Video: patch 1, 128 channels) and a linear ``proj_in``.
As for Wan (``integrations.wan``): ``full`` calls the unmodified transformer; a weak mode gets an embedding and a
de-embedding projected from ``proj_in`` / ``proj_out`` by ``models.patching``, a zero mode embedding and a LoRA
per mode through ``models.modes`` (self-attention ``attn1`` and FFN ``ff`` linears); the token layout and base-grid
coordinates are ``integrations.layout``'s (LTX's VAE is causal too). LTX's RoPE takes coordinates directly
(``video_coords``), so coarse tokens get their fractional centres without new tables. Not done: schedules inside
``LTXPipeline``, which runs both guidance branches in one call and announces no step index; pass ``mode=``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..models.modes import FULL, ModeAdapters, ModeSpec, flexify
from ..models.patching import project_deembed, project_embed_kernel
from .host import FlexiHost
from .layout import Patch, layout_coordinates, segment_patch, segment_sizes, temporal_layout

LORA_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.0.proj", "ff.net.2")


def pack(video: torch.Tensor, patch: Patch) -> torch.Tensor:
    """``(B, C, T, H, W)`` -> tokens ``(B, N, C*pt*ph*pw)`` (LTXPipeline._pack_latents' order)."""
    b, c, t, h, w = video.shape
    pt, ph, pw = patch
    x = video.reshape(b, c, t // pt, pt, h // ph, ph, w // pw, pw)
    return x.permute(0, 2, 4, 6, 1, 3, 5, 7).flatten(4, 7).flatten(1, 3)


def unpack(tokens: torch.Tensor, thw: tuple[int, int, int], patch: Patch) -> torch.Tensor:
    """Inverse of ``pack``: tokens ``(B, N, C*prod(patch))`` of a latent ``(T, H, W)`` -> ``(B, C, T, H, W)``."""
    (t, h, w), (pt, ph, pw) = thw, patch
    x = tokens.reshape(tokens.shape[0], t // pt, h // ph, w // pw, -1, pt, ph, pw)
    return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(tokens.shape[0], -1, t, h, w)


class FlexiLTXTransformer(FlexiHost):
    """An ``LTXVideoTransformer3DModel`` with weak patch modes; see the module docstring."""

    def __init__(self, transformer: nn.Module, modes: dict | None = None, projection: str = "paper"):
        super().__init__()
        self.transformer, self.projection = transformer, projection
        cfg = transformer.config
        self.base: Patch = (cfg.patch_size_t, cfg.patch_size, cfg.patch_size)
        self.embed, self.deembed = nn.ModuleDict(), nn.ModuleDict()
        self.mode_embed = nn.ParameterDict()
        self.specs: dict[str, ModeSpec] = {}
        self.mode_adapters = ModeAdapters(self, self.specs, blocks="transformer.transformer_blocks",
                                          targets=LORA_TARGETS, mode_params=self._mode_layers)
        if modes:
            flexify(self, modes)

    def add_mode(self, name: str, spec: ModeSpec) -> None:
        """Add a weak mode: linear embed / de-embed projected from LTX's, zero mode embedding, and its adapter."""
        if name == FULL or name in self.specs:
            raise ValueError(f"mode name '{name}' is taken (modes: {', '.join(self.modes)})")
        if any(p % b for p, b in zip(spec.patch, self.base)):
            raise ValueError(f"mode '{name}' patch {spec.patch} must be a multiple of LTX's patch {self.base}")
        lin_in, lin_out = self.transformer.proj_in, self.transformer.proj_out
        c_in, c_out = lin_in.in_features // math.prod(self.base), lin_out.out_features // math.prod(self.base)
        kinds = {"body": spec.patch, **({"first": segment_patch(spec.patch, "first")} if spec.patch[0] > 1 else {})}
        embeds, deembeds = nn.ModuleDict(), nn.ModuleDict()
        for kind, p in kinds.items():
            e = nn.Linear(c_in * math.prod(p), lin_in.out_features).to(lin_in.weight.device, lin_in.weight.dtype)
            d = nn.Linear(lin_out.in_features, c_out * math.prod(p)).to(lin_out.weight.device, lin_out.weight.dtype)
            with torch.no_grad():  # packed features are ordered (c, pt, ph, pw), as flexivid's projections take them
                kernel = lin_in.weight.reshape(lin_in.out_features, c_in, *self.base)
                e.weight.copy_(project_embed_kernel(kernel, self.base, p, self.projection).flatten(1))
                e.bias.copy_(lin_in.bias)
                w, b = project_deembed(lin_out.weight, lin_out.bias, c_out, self.base, p)
                d.weight.copy_(w)
                d.bias.copy_(b)
            embeds[kind], deembeds[kind] = e, d
        self.embed[name], self.deembed[name] = embeds, deembeds
        self.mode_embed[name] = nn.Parameter(torch.zeros(lin_in.out_features, device=lin_in.weight.device,
                                                         dtype=lin_in.weight.dtype))
        self.mode_adapters.add(name, spec)

    def forward(self, hidden_states, encoder_hidden_states, timestep, encoder_attention_mask, num_frames: int,
                height: int, width: int, rope_interpolation_scale=None, video_coords=None, attention_kwargs=None,
                return_dict: bool = True, mode: str = FULL):
        """``LTXVideoTransformer3DModel.forward`` plus ``mode``; ``num_frames/height/width`` count base tokens."""
        if mode not in self.modes:
            raise ValueError(f"unknown mode {mode!r}; this model has modes: {', '.join(self.modes)}")
        self.mode_adapters.activate(mode)
        if mode == FULL:
            return self.transformer(hidden_states, encoder_hidden_states, timestep, encoder_attention_mask,
                                    num_frames, height, width, rope_interpolation_scale, video_coords,
                                    attention_kwargs, return_dict)
        if video_coords is not None:
            raise ValueError("weak modes place their tokens themselves: pass rope_interpolation_scale, not video_coords")
        ltx, patch = self.transformer, self.specs[mode].patch
        thw = (num_frames * self.base[0], height * self.base[1], width * self.base[2])  # latent frames, rows, columns
        video = unpack(hidden_states, thw, self.base)  # (B, C, T, H, W)
        layout = temporal_layout(thw, patch, mode)
        tokens = torch.cat([self.embed[mode][k](pack(video[:, :, s:e], segment_patch(patch, k)))
                            for s, e, k in layout], 1)  # (B, N, D)
        tokens = tokens + self.mode_embed[mode].to(tokens.dtype)
        rope = ltx.rope(tokens, video_coords=self._video_coords(layout, patch, thw, rope_interpolation_scale, tokens))
        mask = encoder_attention_mask
        if mask is not None and mask.ndim == 2:  # as LTX: keep -> 0, padding -> -10000, broadcast over queries
            mask = ((1 - mask.to(tokens.dtype)) * -10000.0).unsqueeze(1)
        b = tokens.shape[0]
        temb, embedded = ltx.time_embed(timestep.flatten(), batch_size=b, hidden_dtype=tokens.dtype)
        temb, embedded = temb.view(b, -1, temb.shape[-1]), embedded.view(b, -1, embedded.shape[-1])
        text = ltx.caption_projection(encoder_hidden_states).view(b, -1, tokens.shape[-1])
        for block in self.mode_adapters.blocks_for(mode):
            tokens = block(tokens, text, temb, rope, mask)
        shift, scale = (ltx.scale_shift_table[None, None] + embedded[:, :, None]).unbind(2)
        tokens = ltx.norm_out(tokens) * (1 + scale) + shift
        parts = tokens.split(segment_sizes(layout, patch, thw[1:]), 1)
        video = torch.cat([unpack(self.deembed[mode][k](x), (e - s, *thw[1:]), segment_patch(patch, k))
                           for x, (s, e, k) in zip(parts, layout)], dim=2)
        out = pack(video, self.base)
        if not return_dict:
            return (out,)
        from diffusers.models.modeling_outputs import Transformer2DModelOutput

        return Transformer2DModelOutput(sample=out)

    def _video_coords(self, layout, patch, thw, scale, like: torch.Tensor) -> torch.Tensor:
        """LTX's ``video_coords`` ``(B, 3, N)`` for base-grid token centres: LTX divides them by its base sizes, and
        scales its own integer grid by ``rope_interpolation_scale * patch`` first (none: the raw grid)."""
        rope = self.transformer.rope
        coords = layout_coordinates(layout, patch, self.base, thw[1:])  # (N, 3) in base tokens
        if scale is None:
            mult = [rope.base_num_frames, rope.base_height, rope.base_width]
        else:
            mult = [float(scale[0]) * rope.patch_size_t, float(scale[1]) * rope.patch_size,
                    float(scale[2]) * rope.patch_size]
        vc = (coords * torch.tensor(mult, dtype=torch.float64)).T.float()
        return vc[None].expand(like.shape[0], -1, -1).to(like.device)
