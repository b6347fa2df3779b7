#!/usr/bin/env bash
# The speed suite on one GPU (one call, at most --budget seconds of suite, 380 by default, on an H200):
# end-to-end speed-ups of the frontier's schedules against full@30 at batch 1 and 16 (round-robin, 5 repeats,
# median/min/max), graphed vs eager-loop videos in bf16 and fp32 (the equivalence sections), GPU-busy share and
# kernel count per call, kernels per captured step of each mode, and the kernel table at the reference and paper_video sizes, each with its plain-DiT
# calibration row, then the profile of the full mode against that plain stack (kernel time by category, top kernels)
# (tools/benchmark.py --suite speed). The paper-size rows start only while the budget lasts.
#
#   scripts/gpu/speed.sh --prepare                     # HERE (CPU): .gpu/speed_text_cache.safetensors (16 captions)
#   OUT=/out scripts/gpu/speed.sh                      # on the GPU, carrying .gpu (the checkpoint is tracked)
#   OUT=/out scripts/gpu/speed.sh --checkpoint DIR     # another exported model (same text encoder), carried too
#   OUT=/tmp/s scripts/gpu/speed.sh --smoke            # CPU: the same path on a random tiny model
#
# Options: --checkpoint DIR (default checkpoints/flexivid-small), --text-cache FILE (default
# .gpu/speed_text_cache.safetensors), --budget SECONDS (default 380), --sections LIST (default
# "end_to_end busy kernels step_ops equivalence equivalence_fp32 kernels_profile"; add first_video for time to first
# video), and anything after -- goes to tools/benchmark.py. Writes $OUT/speed.md, speed.json, speed.log and
# device.txt. Sections run in one fixed priority order, whatever the order of LIST: end_to_end, busy, kernels
# reference, step_ops, equivalence, first_video, equivalence_fp32, kernels paper_video, kernels_profile reference,
# kernels_profile paper_video; one that no longer fits the budget is listed as skipped, so a short budget is spent on
# end_to_end, busy and kernels reference first. The profile alone: --sections kernels_profile.
set -euo pipefail
cd "$(dirname "$0")/../.."

ckpt=checkpoints/flexivid-small
cache=.gpu/speed_text_cache.safetensors
budget=380
sections="end_to_end busy kernels step_ops equivalence equivalence_fp32 kernels_profile"
smoke=0
prepare=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) ckpt=$2; shift 2 ;;
    --text-cache) cache=$2; shift 2 ;;
    --budget) budget=$2; shift 2 ;;
    --sections) sections=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    --prepare) prepare=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
py=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export TQDM_DISABLE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1

if [ "$prepare" = 1 ]; then
  # the GPU machine has no text model: embed 16 held-out synthetic captions here (MiniLM, as the checkpoint)
  mkdir -p .gpu
  "$py" -c "from flexivid.config import DataConfig; from flexivid.data.synthetic import SyntheticVideoDataset, \
caption_for; ds = SyntheticVideoDataset(DataConfig(split='test', num_clips=16)); \
print('\n'.join(caption_for(ds.attrs(i)) for i in range(16)))" > .gpu/speed_captions.txt
  "$py" tools/build_text_cache.py --config configs/pretrain_synthetic.yaml --captions .gpu/speed_captions.txt \
    --output "$cache"
  exit 0
fi

out=${OUT:?set OUT to the output folder}
mkdir -p "$out"
if [ "$smoke" = 1 ]; then
  # shellcheck disable=SC2086  # the section list splits into words on purpose
  "$py" tools/benchmark.py --suite speed --smoke --budget-s 1500 --sections $sections --output "$out" "${extra[@]}" \
    2>&1 | tee "$out/speed.log"
  exit "${PIPESTATUS[0]}"
fi
if [ ! -f "$ckpt/config.json" ]; then
  echo "error: no exported model at --checkpoint $ckpt (config.json missing); carry the folder tools/export_release.py wrote" >&2
  exit 2
fi
if [ ! -f "$cache" ]; then
  echo "error: text cache $cache not found; run scripts/gpu/speed.sh --prepare on a machine with MiniLM and carry .gpu" >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee "$out/device.txt"
# shellcheck disable=SC2086
"$py" tools/benchmark.py --suite speed --checkpoint "$ckpt" --text-cache "$cache" --budget-s "$budget" \
  --sections $sections --output "$out" "${extra[@]}" 2>&1 | tee "$out/speed.log"
exit "${PIPESTATUS[0]}"
