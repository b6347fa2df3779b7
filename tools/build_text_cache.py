#!/usr/bin/env python
"""Encode every caption a run will read and write the safetensors text cache (``text.encoder: cache``).

    python tools/build_text_cache.py --config configs/pretrain_synthetic.yaml
    python tools/build_text_cache.py --config X --captions my_captions.txt --output runs/text_cache/mine.safetensors

Captions: the built-in synthetic dataset's full caption list (train and test splits, 864), or for
``data.name: video_folder`` the captions of ``data.captions``, or a ``--captions`` file (.txt one per line, or a
CSV / JSONL with a ``caption`` field). Runs on the CPU; the cache is what travels to GPU machines, which need no
text model. The encoder is the source one (default MiniLM), whatever ``text.encoder`` says.
"""
import argparse
import csv
import dataclasses
import json
import sys
import time

from flexivid.config import ConfigError, load_config
from flexivid.errors import OneLineParser, report_errors


def read_caption_file(path: str) -> list[str]:
    """Captions from a .txt (one per line), .csv (``caption`` column) or .jsonl (``caption`` key) file."""
    with open(path, encoding="utf-8", newline="") as f:
        if path.lower().endswith(".csv"):
            reader = csv.DictReader(f)
            if not reader.fieldnames or "caption" not in reader.fieldnames:
                raise ValueError(f"{path}: CSV needs a 'caption' column, got {reader.fieldnames}")
            return [row["caption"] for row in reader]
        if path.lower().endswith((".jsonl", ".json")):
            return [str(json.loads(line)["caption"]) for line in f if line.strip()]
        return [line.strip() for line in f if line.strip()]


def dataset_captions(cfg) -> list[str]:
    if cfg.data.name == "synthetic":
        from flexivid.data.synthetic import all_captions

        return all_captions()  # both splits: evaluation prompts come from the test split
    from flexivid.data.video_folder import read_captions

    if not cfg.data.captions:
        raise ConfigError("config error: data.captions is not set (video_folder) and no --captions file was given")
    return [caption for _, caption in read_captions(cfg.data.captions)]


def main(argv=None) -> int:
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="run config: its text.* and data.* sections are used")
    ap.add_argument("--captions", default=None, help="captions file instead of the dataset's captions")
    ap.add_argument("--output", default=None, help="cache file (default: text.cache_path of the config)")
    ap.add_argument("--encoder", choices=("minilm", "hf"), default="minilm", help="the source text encoder")
    ap.add_argument("--hf-path", default=None, help="local transformers folder for --encoder hf")
    return report_errors(run, ap.parse_args(argv))


def run(a) -> int:
    cfg = load_config(a.config)
    out = a.output or cfg.text.cache_path
    if not out:
        raise ConfigError(f"config error: no --output given and text.cache_path is not set in {a.config}")
    captions = read_caption_file(a.captions) if a.captions else dataset_captions(cfg)
    from flexivid.text import build_text_cache, build_text_encoder

    text_cfg = dataclasses.replace(cfg.text, encoder=a.encoder, path=a.hf_path or cfg.text.path)
    t0 = time.perf_counter()
    n = build_text_cache(build_text_encoder(text_cfg), captions, out)
    print(f"wrote {out}: {n} captions with {text_cfg.encoder} (max_length {text_cfg.max_length}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
