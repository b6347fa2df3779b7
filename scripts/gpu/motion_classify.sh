#!/usr/bin/env bash
# A checkpoint as a diffusion classifier of the caption's direction, on one GPU (tools/motion_oracle.py classify):
# its flow loss under each of the 4 direction captions on test-split clips, same noise, at 9 noise levels. The
# oracle's side of the table is computed on the CPU with --oracle-only on the same probe set (same --clips, --seed).
#
#   OUT=/out scripts/gpu/motion_classify.sh                          # on the GPU, carrying runs/text_cache
#   OUT=/out scripts/gpu/motion_classify.sh --checkpoint DIR --clips 256
#   OUT=/tmp/c scripts/gpu/motion_classify.sh --smoke     # CPU: 1 clip at one t (PYTHON=... picks the interpreter)
#
# Writes $OUT/classify.jsonl (one line per t, per-clip losses included) and $OUT/classify.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to an output folder}"

ckpt=checkpoints/flexivid-small
clips=128
smoke=0
while [ $# -gt 0 ]; do
  case "$1" in
    --checkpoint) ckpt=$2; shift 2 ;;
    --clips) clips=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    *) echo "error: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
if [ "$smoke" = 1 ]; then
  args=(--device cpu --batch 4 --clips 1 --t 0.9 --threads 2)
else
  args=(--device cuda --batch 64 --clips "$clips")
fi
PYTHONPATH=$PWD ${PYTHON:-python3} tools/motion_oracle.py classify --checkpoint "$ckpt" "${args[@]}" \
  --output "$OUT/classify.jsonl" 2>&1 | tee "$OUT/classify.log"
