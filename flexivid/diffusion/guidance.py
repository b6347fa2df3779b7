"""Classifier-free guidance and FlexiDiT's weak-to-strong guidance with mixed patch sizes.

The model predicts a velocity; both guidance rules are linear in the prediction, so they read the same for
velocities as for the paper's epsilons:

* same mode in both branches, or a guide mode at least as strong as the conditional one: standard CFG
  ``v = v(x, null; p_g) + s1 * (v(x, c; p_c) - v(x, null; p_g))``;
* conditional mode stronger (more tokens) than the guide mode, weak-to-strong on: the guide is the weak mode's
  CONDITIONAL prediction, "a worse version of itself" (autoguidance):
  ``v = v(x, c; weak) + s2 * (v(x, c; strong) - v(x, c; weak))`` with ``(1 - s1) / (1 - s2) = 2.5``.

``guided_velocity`` runs the two branch predictions as one batched call (same mode, the null text is a batch row),
one packed row (different token counts on the same weights, ``FlexiVideoDiT.forward_packed``) or two calls.
Its text is the prompt tokens, or a ``PromptText`` that encodes each branch layout's text once for a whole sampling
loop (``model.encode_text``): the text side of every step then costs nothing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# The paper's rule (App. B.4): (1 - s1) / (1 - s2) = 2.5 "works consistently".
W2S_RATIO = 2.5


def cfg(v_uncond: torch.Tensor, v_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance ``v_u + s * (v_c - v_u)``; any matching shapes, e.g. ``(B, C, T, H, W)``."""
    return v_uncond + scale * (v_cond - v_uncond)


def weak_to_strong(v_weak: torch.Tensor, v_strong: torch.Tensor, scale: float) -> torch.Tensor:
    """Weak-to-strong guidance ``v(c; weak) + s2 * (v(c; strong) - v(c; weak))`` (both conditional predictions)."""
    return v_weak + scale * (v_strong - v_weak)


def s2_from_s1(s1: float, ratio: float = W2S_RATIO) -> float:
    """Weak-to-strong scale from the CFG scale by ``(1 - s1) / (1 - s2) = ratio``; s1 = 4 gives s2 = 2.2."""
    return 1.0 - (1.0 - s1) / ratio


@dataclass(frozen=True)
class StepPlan:
    """What one denoising step runs. ``kind``: ``cfg``, ``weak_to_strong`` or ``cond_only`` (guidance off).

    ``guide_mode`` is None for ``cond_only``; ``guide_text`` says whether the guide branch sees the prompt (the
    weak conditional) or the null text (CFG).
    """

    kind: str
    cond_mode: str
    guide_mode: str | None
    guide_text: bool


def plan_step(cond_mode: str, guide_mode: str, modes: dict[str, tuple[int, int, int]], weak_to_strong: bool = True,
              guided: bool = True) -> StepPlan:
    """Decide the predictions a step needs from the schedule's ``(cond_mode, guide_mode)``.

    A mode is stronger when it makes more tokens, i.e. has the smaller patch volume. ``guided=False`` (scale 1)
    needs only the conditional prediction.
    """
    for m in (cond_mode, guide_mode):
        if m not in modes:
            raise ValueError(f"unknown mode {m!r}; this model has modes: {', '.join(modes)}")
    if not guided:
        return StepPlan("cond_only", cond_mode, None, False)
    if weak_to_strong and math.prod(modes[cond_mode]) < math.prod(modes[guide_mode]):
        return StepPlan("weak_to_strong", cond_mode, guide_mode, True)
    return StepPlan("cfg", cond_mode, guide_mode, False)


class PromptText:
    """The text of one prompt batch in each layout a step's model call takes, each made once and reused by every step.

    Layouts: ``cond`` (the prompts), ``null`` (the unconditional rows, as ``text=None``), ``pair`` (the prompts, then
    the same rows dropped to the null text: both CFG branches in one batched call), ``twice`` (the prompts twice).
    ``args(layout)`` gives the ``(text, text_mask)`` arguments of the model call: a ``TextContext`` when the model has
    ``encode_text`` (its caption MLP and cross-attention K/V then run once per layout, not once per step), else the
    tokens themselves.
    """

    def __init__(self, model, text: torch.Tensor, text_mask: torch.Tensor | None):
        self.model, self.text, self.mask = model, text, text_mask
        self.cache: dict[str, tuple] = {}

    def tokens(self, layout: str) -> tuple:
        """``(text, text_mask)`` tokens of ``layout``, before any encoding."""
        if layout == "cond":
            return self.text, self.mask
        if layout == "null":
            return None, None
        if layout not in ("pair", "twice"):
            raise ValueError(f"unknown text layout {layout!r}; allowed: cond, null, pair, twice")
        b = self.text.shape[0]
        text2 = torch.cat([self.text, self.text])
        mask2 = None if self.mask is None else torch.cat([self.mask, self.mask])
        if layout == "twice":
            return text2, mask2
        drop = torch.arange(2 * b, device=self.text.device) >= b  # the second half becomes the null text
        return self.model.drop_text(text2, mask2, drop)

    def args(self, layout: str) -> tuple:
        """The model call's ``(text, text_mask)`` for ``layout``, encoded on first use."""
        if layout not in self.cache:
            text, mask = self.tokens(layout)
            encode = getattr(self.model, "encode_text", None)
            if encode is not None:
                rows = self.text.shape[0] * (2 if layout in ("pair", "twice") else 1)
                text, mask = encode(text, mask, rows), None
            self.cache[layout] = (text, mask)
        return self.cache[layout]


def step_layouts(plan: StepPlan) -> tuple[str, ...]:
    """The text layouts the model calls of ``plan`` read (``PromptText``), for calls that run as one batch or two."""
    if plan.guide_mode is None:
        return ("cond",)
    if plan.cond_mode == plan.guide_mode:
        return ("twice",) if plan.guide_text else ("pair",)
    return ("cond",) if plan.guide_text else ("cond", "null")


def branch_predictions(model, x: torch.Tensor, t: torch.Tensor, text, text_mask: torch.Tensor | None,
                       plan: StepPlan) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(v_cond, v_guide)``, each ``(B, C, T, H, W)``; ``v_guide`` is None for ``cond_only``.

    x: latents ``(B, C, T, H, W)`` in the model's dtype; t: ``(B,)`` or a scalar; text: prompt tokens ``(B, L, Dt)``
    or a ``PromptText`` of them (then text_mask is None); text_mask: ``(B, L)`` bool. One mode in both branches: one
    call of batch 2B (the null text as rows). Two modes that run the same weights (``model.can_pack``): one packed
    row. Otherwise two calls.
    """
    prompt = text if isinstance(text, PromptText) else PromptText(model, text, text_mask)
    if plan.guide_mode is None:
        return model(x, t, *prompt.args("cond"), plan.cond_mode), None
    if plan.cond_mode == plan.guide_mode:
        b = x.shape[0]
        t2 = torch.as_tensor(t, device=x.device, dtype=torch.float32).reshape(-1).expand(b).repeat(2)
        v = model(torch.cat([x, x]), t2, *prompt.args(step_layouts(plan)[0]), plan.cond_mode)
        return v[:b], v[b:]
    guide = "cond" if plan.guide_text else "null"
    if model.can_pack([plan.cond_mode, plan.guide_mode]):
        # one packed row re-encodes each request's valid text rows (eager only: it reads the lengths)
        return tuple(model.forward_packed([(x, t, *prompt.args("cond"), plan.cond_mode),
                                           (x, t, *prompt.args(guide), plan.guide_mode)]))
    return model(x, t, *prompt.args("cond"), plan.cond_mode), model(x, t, *prompt.args(guide), plan.guide_mode)


def guided_velocity(model, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None,
                    plan: StepPlan, scale: float, ratio: float = W2S_RATIO) -> torch.Tensor:
    """The guided float32 velocity ``(B, C, T, H, W)`` for one step; ``scale`` is the CFG scale s1 (weak-to-strong steps
    use ``s2_from_s1(scale, ratio)``). Arguments as in ``branch_predictions``."""
    v_cond, v_guide = branch_predictions(model, x, t, text, text_mask, plan)
    if plan.kind == "cond_only":
        return v_cond.float()
    v_cond, v_guide = v_cond.float(), v_guide.float()  # combine in fp32: s * (a - b) of bf16 values loses digits
    if plan.kind == "weak_to_strong":
        return weak_to_strong(v_guide, v_cond, s2_from_s1(scale, ratio))
    return cfg(v_guide, v_cond, scale)
