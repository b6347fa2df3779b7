"""Sampling with no per-step host work: one captured graph per (step plan, batch shape).

Each graph holds one whole denoising step: the guided model call (both guidance branches in one batched call when
they share a mode), the guidance combine in float32 and the Euler update. All graphs of one shape share static
buffers (latents, text tokens, mask, the step's ``(t, t_next)``, the encoded text) and update the latents in place, so
a step costs the host one 8-byte copy and one graph launch, and consecutive steps pass nothing through the host.
The text side of the model (caption MLP, null rows, every block's cross-attention K/V: ``guidance.PromptText``) does
not depend on the step: one more graph per shape encodes it once per call into the static buffers the steps read.

Backends:

* ``cuda``: ``torch.cuda.graph`` capture after a warm-up on a side stream (torch's recipe). All graphs share one
  memory pool; none keeps an output alive (every result lands in the static buffers), so sharing is safe.
* ``trace``: ``torch.compile(backend="eager", fullgraph=True)`` of the same step function. It runs the same aten
  ops as eager (the same numbers on the CPU) and fails, like a capture would, on any host sync or data-dependent
  branch in the step. For tests and machines without CUDA.
* ``none``: the step function run eagerly on the static buffers.

Steps whose branches run different modes (weak-to-strong guidance, split orders) run the two branches as two calls
inside the graph: the packed row would need the prompt lengths on the host.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .guidance import PromptText, StepPlan, cfg, guided_velocity, s2_from_s1, step_layouts, weak_to_strong

BACKENDS = ("cuda", "trace", "none")


class GraphCaptureError(RuntimeError):
    """A step could not be captured; ``StepGraphs.failed`` keeps the reason and callers run the eager loop."""


class _Disabled:
    """The model's block stack, run outside the step's compiled graphs (the blocks are compiled on their own)."""

    def __init__(self, fn):
        self.fn = torch.compiler.disable(fn)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


@dataclass
class _Buffers:
    """Static inputs of every graph of one shape; ``x`` is also the output (updated in place)."""

    x: torch.Tensor  # (B, C, T, H, W) float32 sampler state
    text: torch.Tensor  # (B, L, Dt)
    mask: torch.Tensor  # (B, L) bool
    sig: torch.Tensor  # (2,) float32: this step's t and the next one
    prompt: PromptText  # of text / mask: its encoded layouts are static too, refreshed once per call


def _tensors(args: tuple) -> list[torch.Tensor]:
    """The tensors of a model call's ``(text, text_mask)`` arguments (tokens or a ``TextContext``)."""
    return [t for a in args if a is not None for t in ([a] if isinstance(a, torch.Tensor) else a.tensors())]


class StepGraphs:
    """Graphed sampling loop for one model; reuse it across calls (graphs are cached per plan and shape).

    ``sample(x, sigmas, text, mask, steps_plan, scale)`` equals the eager loop
    ``for i, p in enumerate(steps_plan): x = x + (sigmas[i+1] - sigmas[i]) * guided_velocity(model, x, sigmas[i], ...)``.
    A captured graph reads the model's weights where they were at capture: after moving, re-merging or replacing
    them, build a new ``StepGraphs`` (in-place updates such as ``load_state_dict`` are seen).
    """

    def __init__(self, model: torch.nn.Module, backend: str | None = None, warmup: int = 2,
                 compile: str | None = None):
        """``compile``: ``torch.compile`` backend for the step outside the block stack (``inductor`` fuses the
        embedding, guidance and Euler element-wise work; ``eager`` for tests), or None. The blocks keep their own
        (regional) compile: the step's graphs stop at the block stack, so a new shape compiles two small graphs."""
        cuda = next(model.parameters()).device.type == "cuda"
        backend = backend or ("cuda" if cuda else "none")
        if backend not in BACKENDS:
            raise ValueError(f"unknown graph backend {backend!r}; allowed: {', '.join(BACKENDS)}")
        if backend == "cuda" and not cuda:
            raise ValueError("graph backend 'cuda' needs the model on a CUDA device; use 'trace' or 'none'")
        if backend == "trace" and compile:
            raise ValueError("the 'trace' backend already compiles the step; give compile=None")
        self.model, self.backend, self.warmup = model, backend, warmup
        self.device = next(model.parameters()).device  # of the static buffers; a call's inputs may be on the host
        self.buffers: dict[tuple, _Buffers] = {}
        self.graphs: dict[tuple, object] = {}  # (shape key, plan, scale) -> CUDAGraph replay | step callable
        self.encoders: dict[tuple, object] = {}  # (shape key, text layouts) -> replay | callable (once per call)
        self.pool = torch.cuda.graph_pool_handle() if backend == "cuda" else None
        self.failed: str | None = None  # why capture failed (then callers fall back to the eager loop)
        self._step = self.step
        if compile or backend == "trace":  # one graph per (plan, shape): adaptive sub-batches meet many shapes
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        if compile:
            if not isinstance(getattr(model, "_blocks_forward", None), _Disabled):
                model._blocks_forward = _Disabled(model._blocks_forward)
            self._step = torch.compile(self.step, backend=compile, dynamic=False)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def velocity(self, x, t, prompt: PromptText, plan: StepPlan, scale: float) -> torch.Tensor:
        """``guided_velocity``, except that two modes always run as two calls (a packed row needs the prompt lengths
        on the host)."""
        if plan.guide_mode in (None, plan.cond_mode):  # one batched call
            return guided_velocity(self.model, x, t, prompt, None, plan, scale)
        v_cond = self.model(x, t, *prompt.args("cond"), plan.cond_mode).float()
        v_guide = self.model(x, t, *prompt.args("cond" if plan.guide_text else "null"), plan.guide_mode).float()
        if plan.kind == "weak_to_strong":
            return weak_to_strong(v_guide, v_cond, s2_from_s1(scale))
        return cfg(v_guide, v_cond, scale)

    def step(self, buf: _Buffers, plan: StepPlan, scale: float) -> None:
        """One denoising step on the static buffers: ``x <- x + (t_next - t) * v_guided(x, t)`` in float32."""
        t = buf.sig[0].expand(buf.x.shape[0])  # (B,)
        v = self.velocity(buf.x.to(self.dtype), t, buf.prompt, plan, scale)
        buf.x.copy_(buf.x + (buf.sig[1] - buf.sig[0]) * v)  # FlexiScheduler.step's update

    def _buffers(self, x, text, mask) -> tuple[tuple, _Buffers]:
        key = (tuple(x.shape), tuple(text.shape), text.dtype, self.device)
        if key not in self.buffers:
            text_buf = torch.empty(text.shape, dtype=text.dtype, device=self.device)
            mask_buf = torch.empty(mask.shape, dtype=torch.bool, device=self.device)
            self.buffers[key] = _Buffers(torch.empty(x.shape, dtype=torch.float32, device=self.device), text_buf,
                                         mask_buf, torch.empty(2, device=self.device, dtype=torch.float32),
                                         PromptText(self.model, text_buf, mask_buf))
        return key, self.buffers[key]

    def encode(self, buf: _Buffers, layouts: tuple[str, ...]) -> None:
        """Encode ``buf``'s text in ``layouts`` afresh and copy it into the static encodings the steps read."""
        fresh = PromptText(self.model, buf.text, buf.mask)
        for layout in layouts:
            for dst, src in zip(_tensors(buf.prompt.args(layout)), _tensors(fresh.args(layout)), strict=True):
                dst.copy_(src)

    def _encoder(self, key: tuple, buf: _Buffers, layouts: tuple[str, ...]):
        """The once-per-call text encoding of ``layouts`` (a graph on CUDA); the first one allocates the statics."""
        if (key, layouts) not in self.encoders:
            for layout in layouts:
                buf.prompt.args(layout)  # eager: these tensors become the static encodings
            fn = self.encode
            if self.backend == "trace":
                fn = torch.compile(self.encode, backend="eager", fullgraph=True, dynamic=False)
            self.encoders[key, layouts] = self._capture(lambda: fn(buf, layouts))
        return self.encoders[key, layouts]

    def _build(self, buf: _Buffers, plan: StepPlan, scale: float):
        if self.backend == "trace":
            fn = torch.compile(self.step, backend="eager", fullgraph=True, dynamic=False)
            return lambda: fn(buf, plan, scale)
        return self._capture(lambda: self._step(buf, plan, scale))

    def _capture(self, fn):
        """``fn`` (no arguments, static inputs and outputs) as a CUDA graph's replay on the ``cuda`` backend."""
        if self.backend != "cuda":
            return fn
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: compiles, builds the per-shape RoPE tables, tunes kernels
            for _ in range(self.warmup):
                fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            fn()
        return graph.replay

    def sample(self, x: torch.Tensor, sigmas: torch.Tensor, text: torch.Tensor, mask: torch.Tensor,
               steps_plan: list[StepPlan], scale: float, copy: bool = True) -> torch.Tensor:
        """Run the whole schedule; ``x (B, C, T, H, W)`` noise, ``sigmas`` the ``(steps + 1,)`` table on the model's
        device or its ``(steps, 2)`` rows ``(t, t_next)`` (``FlexiScheduler.sigma_pairs``: made once, no work per
        call). ``x``, ``text`` and ``mask`` may be on the host: each is copied once, straight into its static buffer.

        Returns the final float32 latents: a new tensor, or with ``copy=False`` the static buffer itself, which the
        next call of the same shape overwrites (for a caller that makes its own copy of it right away)."""
        pairs = sigmas if sigmas.dim() == 2 else torch.stack([sigmas[:-1], sigmas[1:]], dim=1).float()
        if len(pairs) != len(steps_plan):
            raise ValueError(f"{len(steps_plan)} steps need {len(steps_plan) + 1} sigmas, got {len(pairs) + 1}")
        key, buf = self._buffers(x, text, mask)
        buf.text.copy_(text)
        buf.mask.copy_(mask)
        layouts = tuple(sorted({layout for plan in steps_plan for layout in step_layouts(plan)}))
        try:
            self._encoder(key, buf, layouts)()  # the prompt's text work, once for every step of this call
        except RuntimeError as e:
            if self.backend != "cuda":
                raise
            self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            raise GraphCaptureError(self.failed) from e
        rows = pairs.unbind(0)  # one op for every step's (t, t_next) view
        runs = []
        for i, plan in enumerate(steps_plan):
            gkey = (key, plan, float(scale))
            if gkey not in self.graphs:  # capture on the real inputs of its first step; x is reset below
                buf.x.copy_(x)
                buf.sig.copy_(rows[i])
                try:
                    self.graphs[gkey] = self._build(buf, plan, float(scale))
                except RuntimeError as e:
                    if self.backend != "cuda":
                        raise
                    self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    raise GraphCaptureError(self.failed) from e
            runs.append(self.graphs[gkey])
        buf.x.copy_(x)
        for row, run in zip(rows, runs):
            buf.sig.copy_(row)
            run()
        return buf.x.clone() if copy else buf.x
