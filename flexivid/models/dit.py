"""FlexiVideoDiT: a text-to-video diffusion transformer whose patch size is chosen per call.

Blocks follow PixArt-alpha / Open-Sora: adaLN-single modulation (one global timestep MLP, a learned per-block
shift/scale/gate table; gates start at zero so every block starts as the identity, as in DiT's adaLN-Zero),
self-attention with 3D RoPE and QK-norm, cross-attention to projected text tokens with a padding mask, and a GELU
MLP. Only the tokenizer, de-tokenizer and a zero-initialised mode embedding depend on the mode (FlexiDiT).

``model(x (B, C, T, H, W), t (B,), text (B, L, Dt) | None, text_mask (B, L) | None, mode="full")``
returns the velocity ``(B, C, T, H, W)``. ``text=None`` is the unconditional (classifier-free guidance) branch.
``text`` may also be a ``TextContext`` from ``model.encode_text(text, text_mask)``: the caption MLP and every block's
cross-attention K/V computed once, for a sampler that calls the model many times with the same prompts.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from ..config import ModelConfig
from ..presets import apply_preset
from .attention import Segments, attention, packed_attention, resolve_backend, sdpa_bias
from .modes import FULL, ModeAdapters, ModeSpec
from .patching import FlexiDeEmbed, FlexiPatchEmbed, check_divisible
from .positions import abs_pos_table, apply_rope, rope_tables

# The linears of each block that a weak mode's LoRA adapts: self-attention and MLP (cross-attention stays shared).
LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")

def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of ``t (B,)`` in [0, 1] (scaled by 1000, as DiT's integer steps) -> ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


@dataclass
class AttnContext:
    """How attention is laid out for one trunk pass: dense batch or packed row (block-diagonal)."""

    backend: str
    text_mask: torch.Tensor | None = None  # dense: (B, L) bool
    text_bias: torch.Tensor | None = None  # dense: (B, 1, 1, L) additive SDPA mask of text_mask
    self_segments: Segments | None = None  # packed
    cross_segments: Segments | None = None  # packed


@dataclass
class TextContext:
    """What cross-attention reads from the prompts, from ``FlexiVideoDiT.encode_text``: it depends on neither t nor x,
    so a sampler computes it once per call. Cross-attention has no per-mode adapter, so one context serves every mode
    and every (merged) block stack."""

    text: torch.Tensor  # (B, L, D) the caption MLP's output (a packed row re-encodes its valid tokens)
    kv: list[tuple[torch.Tensor, torch.Tensor]]  # per block: K after QK-norm, V; each (B, L, H, Dh)
    mask: torch.Tensor  # (B, L) bool, True = attend
    bias: torch.Tensor  # (B, 1, 1, L) the same mask as an additive SDPA mask (0 / -inf) in the model dtype

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor, in a fixed order (a captured sampler copies a fresh context into static ones)."""
        return [self.text, self.mask, self.bias, *(t for kv in self.kv for t in kv)]


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        hd = dim // heads
        self.q_norm = nn.RMSNorm(hd, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(hd, eps=1e-6) if qk_norm else nn.Identity()

    def forward(self, x, rope, ctx: AttnContext):
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b n h d", three=3, h=self.heads)
        q, k = apply_rope(self.q_norm(q), *rope).to(v.dtype), apply_rope(self.k_norm(k), *rope).to(v.dtype)
        if ctx.self_segments is not None:
            out = packed_attention(q, k, v, ctx.self_segments, ctx.backend)
        else:
            out = attention(q, k, v, backend=ctx.backend)
        return self.proj(out.flatten(2))


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        hd = dim // heads
        self.q_norm = nn.RMSNorm(hd, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(hd, eps=1e-6) if qk_norm else nn.Identity()

    def encode(self, text):
        """Projected text ``(B, L, D)`` -> ``(K, V)``, each ``(B, L, H, Dh)``: the prompt-only half of the layer."""
        k, v = rearrange(self.kv(text), "b l (two h d) -> two b l h d", two=2, h=self.heads)
        return self.k_norm(k), v

    def forward(self, x, kv, ctx: AttnContext):
        """x (B, N, D); kv from ``encode``."""
        q = self.q_norm(rearrange(self.q(x), "b n (h d) -> b n h d", h=self.heads))
        k, v = kv
        if ctx.cross_segments is not None:
            out = packed_attention(q, k, v, ctx.cross_segments, ctx.backend)
        else:
            out = attention(q, k, v, kv_mask=ctx.text_mask, backend=ctx.backend, kv_bias=ctx.text_bias)
        return self.proj(out.flatten(2))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """adaLN-single block: self-attn (RoPE, QK-norm) -> cross-attn -> MLP, each gated."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(dim, heads, qk_norm)
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = CrossAttention(dim, heads, qk_norm)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        table = torch.randn(6, dim) / dim**0.5
        table[2].zero_()  # gate_msa
        table[5].zero_()  # gate_mlp
        self.scale_shift_table = nn.Parameter(table)

    def forward(self, x, mod, rope, kv, ctx: AttnContext):
        """x (B, N, D); mod (B, 1 or N, 6, D) from the timestep; rope cos/sin (N, Dh/2); kv this block's text K/V."""
        sh1, sc1, g1, sh2, sc2, g2 = (self.scale_shift_table + mod).unbind(2)
        x = x + g1 * self.attn(self.norm1(x) * (1 + sc1) + sh1, rope, ctx)
        x = x + self.cross_attn(self.norm_cross(x), kv, ctx)
        return x + g2 * self.mlp(self.norm2(x) * (1 + sc2) + sh2)


class FlexiVideoDiT(nn.Module):
    """Video DiT with a flexible (per-call) 3D patch size. See the module docstring for the forward contract."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        cfg = apply_preset(config)
        if cfg.hidden_size % cfg.num_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} must be divisible by num_heads {cfg.num_heads}")
        self.config = dataclasses.replace(cfg, modes={m: ModeSpec.from_value(s) for m, s in cfg.modes.items()})
        d, c = cfg.hidden_size, cfg.in_channels
        self.patch_embed = FlexiPatchEmbed(c, d, cfg.patch_size)
        self.deembed = FlexiDeEmbed(d, c, cfg.patch_size)
        self.mode_embed = nn.ParameterDict()
        self.t_embedder = Mlp(256, d, d)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.text_proj = Mlp(cfg.text_dim, d, d)
        self.null_text = nn.Parameter(torch.randn(1, cfg.text_dim) * 0.02)
        # Absolute position: a learned, zero-initialised projection of fixed sin-cos features (positions.abs_pos_table),
        # so a model trained without it continues training from exactly its old function.
        self.pos_embed = nn.Linear(cfg.hidden_size, cfg.hidden_size) if cfg.abs_pos != "none" else None
        self.blocks = nn.ModuleList(DiTBlock(d, cfg.num_heads, cfg.mlp_ratio, cfg.qk_norm) for _ in range(cfg.depth))
        self.norm_final = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_table = nn.Parameter(torch.randn(2, d) / d**0.5)
        self._trunk = None  # the compiled block stack of compile_blocks(mode="reduce-overhead")
        self._init_weights()
        for name, spec in self.config.modes.items():
            self._add_layers(name, spec.patch)
        # The mode table's owner: adapters, activation, merged stacks, trainable sets (config.modes by reference).
        self.mode_adapters = ModeAdapters(self, self.config.modes, blocks="blocks", targets=LORA_TARGETS,
                                          mode_params=self._mode_layers)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj["full"].weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.t_embedder.fc1.weight, std=0.02)
        nn.init.normal_(self.t_embedder.fc2.weight, std=0.02)
        nn.init.zeros_(self.t_block[1].weight)
        for blk in self.blocks:  # cross-attention starts silent (PixArt)
            nn.init.zeros_(blk.cross_attn.proj.weight)
        nn.init.zeros_(self.deembed.linear["full"].weight)
        if self.pos_embed is not None:
            nn.init.zeros_(self.pos_embed.weight)

    # ----------------------------------------------------------------------------------------------- modes
    @property
    def modes(self) -> dict[str, tuple[int, int, int]]:
        """Mode name -> patch size (t, h, w); ``full`` is the base patch."""
        return {FULL: tuple(self.config.patch_size), **{m: s.patch for m, s in self.config.modes.items()}}

    def add_mode(self, name: str, spec: ModeSpec) -> None:
        """Add a weak mode: embed / de-embed projected from the base, zero mode embedding, and its adapter."""
        if name in self.modes:
            raise ValueError(f"mode '{name}' already exists (modes: {', '.join(self.modes)})")
        self._add_layers(name, spec.patch)
        self.mode_adapters.add(name, spec)

    def _add_layers(self, name: str, patch) -> None:
        self.patch_embed.add_mode(name, patch, self.config.projection)
        self.deembed.add_mode(name, patch)
        ref = self.null_text
        self.mode_embed[name] = nn.Parameter(torch.zeros(self.config.hidden_size, device=ref.device, dtype=ref.dtype))

    def _mode_layers(self, mode: str) -> dict[str, nn.Parameter]:
        """This model's own parameters of one weak mode: embed, de-embed and mode embedding."""
        return {n: p for n, p in self.named_parameters()
                if n == f"mode_embed.{mode}" or n.startswith((f"patch_embed.proj.{mode}.", f"deembed.linear.{mode}."))}

    def check_mode(self, mode: str) -> tuple[int, int, int]:
        if mode not in self.modes:
            raise ValueError(f"unknown mode {mode!r}; this model has modes: {', '.join(self.modes)}")
        return self.modes[mode]

    def num_tokens(self, mode: str, latent_shape) -> int:
        """Tokens of one sample with latent ``(C, T, H, W)`` (or ``(T, H, W)``) in ``mode``."""
        patch = self.check_mode(mode)
        thw = tuple(latent_shape)[-3:]
        check_divisible(thw, patch, mode)
        return math.prod(n // p for n, p in zip(thw, patch))

    def compile_blocks(self, mode: str | None = None, backend: str = "inductor") -> None:
        """``torch.compile`` the block stack; ``backend="eager"`` only traces (for tests).

        Default: regional compilation, each block's forward compiled in place. All blocks share one compiled graph
        per input shape (parameters are graph inputs), so compile time does not grow with depth, and each mode
        (token count) costs one compile.

        ``mode="reduce-overhead"`` (CUDA graphs, which remove the kernel-launch overhead that dominates small models
        at batch 1) compiles the whole stack as one function instead: with one graph shared by every block, CUDA
        graph trees would overwrite a block's output with the next block's run of the same graph.
        """
        blocks = [blk for stack in (self.blocks, *self.mode_adapters.merged.values()) for blk in stack]
        for blk in blocks:  # undo an earlier regional compile (nn.Module.compile sets this attribute)
            blk._compiled_call_impl = None
        kw = dict(mode=mode) if backend == "inductor" else {}  # modes are inductor's
        if mode == "reduce-overhead":
            self._trunk = torch.compile(self._blocks_forward, backend=backend, dynamic=False, **kw)
        else:
            self._trunk = None
            for blk in blocks:
                blk.compile(backend=backend, dynamic=False, **kw)

    def _blocks_forward(self, x, mod, rope, kvs, ctx: AttnContext, blocks: nn.ModuleList):
        for blk, kv in zip(blocks, kvs, strict=True):
            x = blk(x, mod, rope, kv, ctx)
        return x

    # ---------------------------------------------------------------------------------------------- forward
    def forward(self, x, t, text=None, text_mask=None, mode: str = "full"):
        """See the module docstring; ``text`` is tokens ``(B, L, Dt)``, None (null text) or a ``TextContext``."""
        return self._run([(x, t, text, text_mask, mode)], pack=False)[0]

    def forward_packed(self, requests):
        """Run several requests ``[(x, t, text, text_mask, mode), ...]`` as one packed row.

        Sequences of different lengths (modes) share every linear layer call and one block-diagonal attention
        call per layer. Returns the list of outputs; each equals ``forward`` on that request.
        """
        return self._run(list(requests), pack=True)

    def _prepare(self, x, t, text, text_mask, mode):
        patch = self.check_mode(mode)
        if x.dim() != 5 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"latents must be (B, {self.config.in_channels}, T, H, W), got {tuple(x.shape)}")
        check_divisible(tuple(x.shape[2:]), patch, mode)
        b = x.shape[0]
        t = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(b)
        tokens, grid = self.patch_embed(x, mode)
        if mode in self.mode_embed:
            tokens = tokens + self.mode_embed[mode].to(tokens.dtype)
        scale = tuple(p // bp for p, bp in zip(patch, self.config.patch_size))
        if self.pos_embed is not None:  # which frame (and where) each token is: (N, D), the same for every sample
            table = abs_pos_table(tuple(grid), scale, self.config.hidden_size, self.config.abs_pos, str(x.device))
            tokens = tokens + self.pos_embed(table.to(tokens.dtype))
        cos, sin = rope_tables(tuple(grid), scale, self.config.hidden_size // self.config.num_heads,
                               self.config.rope_theta, str(x.device)).unbind(0)
        temb = self.t_embedder(timestep_embedding(t, 256).to(tokens.dtype))
        mod = self.t_block(temb).unflatten(1, (6, -1))  # (B, 6, D)
        if isinstance(text, TextContext):
            if text_mask is not None:
                raise ValueError("text_mask goes with text tokens; a TextContext carries its own mask (pass None)")
            if text.mask.shape[0] != b:
                raise ValueError(f"the TextContext has {text.mask.shape[0]} rows but the latents have {b}; encode_text "
                                 f"the prompts of this batch")
        else:
            text = self.encode_text(text, text_mask, b, tokens.dtype)
        return dict(tokens=tokens, grid=grid, rope=(cos, sin), temb=temb, mod=mod, text=text, mode=mode, b=b)

    def encode_text(self, text=None, text_mask=None, batch: int | None = None, dtype=None) -> TextContext:
        """Prompt tokens ``text (B, L, Dt)`` with ``text_mask (B, L)`` (``None``: the null text of ``batch`` rows) ->
        the ``TextContext`` every block's cross-attention reads: caption MLP, then each block's K/V. ``dtype``: the
        compute dtype (default: the model's)."""
        if text is None and batch is None:
            raise ValueError("encode_text(None) needs batch=, the number of null-text rows")
        dtype = dtype or self.null_text.dtype
        b = batch if text is None else text.shape[0]
        text, mask = self._text(text, text_mask, b, self.null_text.device, dtype)
        y = self.text_proj(text)  # (B, L, D)
        return TextContext(y, [blk.cross_attn.encode(y) for blk in self.blocks], mask, sdpa_bias(mask, y.dtype))

    def drop_text(self, text, text_mask, drop):
        """Replace the text of samples where ``drop (B,)`` is True by the null embedding (caption dropout).

        A dropped row holds the null token at position 0 and masks the rest, which is the same cross-attention
        input as ``text=None``. Returns ``(text (B, L, Dt), text_mask (B, L))``.
        """
        b, length = text.shape[:2]
        if text_mask is None:
            text_mask = torch.ones(b, length, dtype=torch.bool, device=text.device)
        null = torch.zeros_like(text)
        null[:, 0] = self.null_text.to(text.dtype)
        null_mask = torch.zeros_like(text_mask, dtype=torch.bool)
        null_mask[:, 0] = True
        drop = drop.to(text.device).bool()
        return torch.where(drop[:, None, None], null, text), torch.where(drop[:, None], null_mask, text_mask.bool())

    def _text(self, text, text_mask, b, device, dtype):
        if text is None:
            # contiguous: a stride-0 batch takes another matmul path, and its rows would differ from a dropped row's
            null = self.null_text.to(dtype).expand(b, 1, -1).contiguous()
            return null, torch.ones(b, 1, dtype=torch.bool, device=device)
        if text.dim() != 3 or text.shape[0] != b or text.shape[2] != self.config.text_dim:
            raise ValueError(f"text tokens must be (B={b}, L, Dt={self.config.text_dim}), got {tuple(text.shape)}")
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=device)
        if tuple(text_mask.shape) != tuple(text.shape[:2]):
            raise ValueError(f"text_mask shape {tuple(text_mask.shape)} must match text tokens (B, L) = "
                             f"{tuple(text.shape[:2])}")
        # A row with no valid token is the caller's error (the pipeline checks it once per call): checking it here
        # would read the mask back to the host on every forward, which no CUDA graph can capture.
        return text.to(dtype), text_mask.bool()

    def _final(self, x, temb):
        """x (B, N, D), temb (B, 1 or N, D) -> normalised, modulated tokens ready for de-embedding."""
        shift, scale = (self.final_table + temb[:, :, None]).unbind(2)
        return self.norm_final(x) * (1 + scale) + shift

    def _stack(self, x, mod, rope, kvs, ctx: AttnContext, mode: str):
        """All blocks of ``mode`` (``mode_adapters.blocks_for``): ``x (B, N, D)`` -> ``(B, N, D)``, through the
        compiled stack when ``compile_blocks`` made one; ``kvs``: each block's text K/V (``TextContext.kv``)."""
        self.mode_adapters.activate(mode)
        return (self._trunk or self._blocks_forward)(x, mod, rope, kvs, ctx, self.mode_adapters.blocks_for(mode))

    def can_pack(self, modes) -> bool:
        """Whether requests in ``modes`` may share one packed row: only when they run the same block weights."""
        modes = list(modes)
        return all(self.mode_adapters.same_weights(modes[0], m) for m in modes[1:])

    def _run(self, requests, pack: bool):
        backend = resolve_backend(self.config.attention_backend, self.null_text.device)
        if pack and not self.can_pack(r[4] for r in requests):
            raise ValueError(f"modes {', '.join(r[4] for r in requests)} run different block weights and cannot be "
                             f"packed (check can_pack first)")
        preps = [self._prepare(*r) for r in requests]
        if not pack or len(preps) == 1 and preps[0]["b"] == 1:
            outs = []
            for p in preps:
                ctx = AttnContext(backend, text_mask=p["text"].mask, text_bias=p["text"].bias)
                x = self._stack(p["tokens"], p["mod"][:, None], p["rope"], p["text"].kv, ctx, p["mode"])
                x = self._final(x, p["temb"][:, None])
                outs.append(self.deembed(x, p["mode"], p["grid"], self.modes[p["mode"]]))
            return outs
        # Packed row: every sample of every request becomes one segment; its text keys are its valid tokens.
        xs, mods, temb, cos, sin, texts, q_lens, kv_lens = [], [], [], [], [], [], [], []
        for p in preps:
            n = p["tokens"].shape[1]
            for i in range(p["b"]):
                xs.append(p["tokens"][i])
                mods.append(p["mod"][i:i + 1].expand(n, -1, -1))
                temb.append(p["temb"][i:i + 1].expand(n, -1))
                cos.append(p["rope"][0])
                sin.append(p["rope"][1])
                valid = p["text"].text[i][p["text"].mask[i]]
                texts.append(valid)
                q_lens.append(n)
                kv_lens.append(valid.shape[0])
        text = torch.cat(texts)[None]  # (1, sum L_valid, D)
        kvs = [blk.cross_attn.encode(text) for blk in self.blocks]
        ctx = AttnContext(backend, self_segments=Segments(q_lens, q_lens), cross_segments=Segments(q_lens, kv_lens))
        x, mod = torch.cat(xs)[None], torch.cat(mods)[None]
        x = self._stack(x, mod, (torch.cat(cos), torch.cat(sin)), kvs, ctx, preps[0]["mode"])
        x = self._final(x, torch.cat(temb)[None])[0].split(q_lens)
        outs, k = [], 0
        for p in preps:
            outs.append(self.deembed(torch.stack(x[k:k + p["b"]]), p["mode"], p["grid"], self.modes[p["mode"]]))
            k += p["b"]
        return outs
