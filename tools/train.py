#!/usr/bin/env python
"""Train a FlexiVideoDiT (stage: pretrain) or distil its weak modes (stage: distill) with DeepSpeed.

    python tools/train.py --config configs/pretrain_tiny_cpu.yaml                 # one process (CPU or GPU)
    deepspeed --num_gpus 8 tools/train.py --config configs/pretrain_synthetic.yaml
    torchrun --nproc_per_node 2 tools/train.py --config configs/distill_tiny_cpu.yaml
    python tools/train.py --config X --resume                                     # continue from out_dir/ckpt/latest
    deepspeed --num_gpus 8 tools/train.py --config X --deepspeed-config ds_configs/zero3.json   # another ZeRO stage

--resume on another number of processes than the checkpoint's converts it to a DeepSpeed universal checkpoint
(weights, optimizer moments, LR schedule, EMA, step and data position are restored; the global batch follows the
new count). The ZeRO stage must stay the checkpoint's.

Configuration problems (unknown key, batch size disagreeing with the DeepSpeed JSON, missing data / cache / base
checkpoint, a video folder without one decodable video) print one line on stderr and exit with status 2 before
DeepSpeed starts; so does a run that diverges (non-finite loss, or train.max_skipped_steps skipped steps in a row),
naming the step and the last good checkpoint.
"""
import argparse
import dataclasses
import sys

from flexivid.config import load_config
from flexivid.errors import OneLineParser, report_errors


def parse_args(argv=None):
    ap = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML run config (configs/*.yaml)")
    ap.add_argument("--resume", action="store_true",
                    help="continue from <out_dir>/ckpt/latest (bit-exact on the same process count)")
    ap.add_argument("--output", default=None, help="run folder; overrides train.out_dir")
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument("--deepspeed-config", default=None, help="override train.deepspeed_config (ds_configs/*.json)")
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None,
                    help="set by the deepspeed launcher (the rank is read from LOCAL_RANK)")
    return ap.parse_args(argv)


def run(args) -> None:
    cfg = load_config(args.config)
    overrides = {k: v for k, v in (("out_dir", args.output), ("steps", args.steps),
                                   ("deepspeed_config", args.deepspeed_config)) if v is not None}
    cfg.train = dataclasses.replace(cfg.train, **overrides)
    resume = args.resume or cfg.train.resume
    from flexivid.training.preflight import preflight_env

    preflight_env(cfg, args.config, resume)  # one-line errors before the slow DeepSpeed / peft imports
    from flexivid.training.engine import train

    train(cfg, args.config, resume)


def main(argv=None) -> int:
    return report_errors(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
