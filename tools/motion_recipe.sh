#!/usr/bin/env bash
# The motion recipe on ONE GPU, end to end, everything under $OUT:
#   1. continued pretraining with absolute positions: configs/pretrain_motion.yaml (from checkpoints/flexivid-small),
#      stopped at PRETRAIN_S seconds (default 420) if still running; the last export (every 500 steps) is the base
#   2. distillation of coarse_time (2,4,4) and coarse_space (1,8,8): configs/distill_motion.yaml (DISTILL_S, 170)
#   3. bf16 release export (tools/export_release.py), base + adapters
#   4. tools/eval_motion.py: full schedule, 30 steps, CFG 4, 256 test-split prompts x 3 seeds, every attribute and
#      the temporal coherence with 95% bootstrap intervals; tools/eval_modes.py: held-out weak-vs-full distance
#      before / after distillation
# Files back (5): model.tgz.part-a* (the release, 15 MiB parts; join with tools/join_release.sh), results.tgz (logs,
# eval JSONs, samples.gif), summary.txt.
#   OUT=runs/gpu_out bash tools/motion_recipe.sh           # GPU; carry .whl/ (deepspeed wheels) and runs/text_cache/
#   OUT=/tmp/smoke bash tools/motion_recipe.sh --smoke     # CPU, tiny model and sizes, ~5 minutes on 2 cores
set -euo pipefail
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
w=runs/motion_recipe; rm -rf "$w"; mkdir -p "$w/logs"
cache=runs/text_cache/minilm_synthetic.safetensors
if ls .whl/*.whl >/dev/null 2>&1; then  # the GPU machine's deepspeed comes as carried wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export NCCL_NVLS_ENABLE=0 TQDM_DISABLE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}
if [ "$smoke" = 1 ]; then
  launcher=("$py")  # CPU: tools/train.py alone runs one process (RANK/WORLD_SIZE/MASTER_* default to one)
else
  launcher=("$py" -m deepspeed.launcher.runner --num_gpus 1)  # = deepspeed --num_gpus 1, with this Python
fi
[ -f "$cache" ] || "$py" tools/build_text_cache.py --config configs/pretrain_motion.yaml
if [ "$smoke" = 1 ]; then  # the same configs, shrunk: tiny trunk, 8x16x16 clips, a few steps, no init_from / compile
  "$py" - "$w" <<'EOF'
import sys, yaml
w = sys.argv[1]
for name in ("pretrain_motion", "distill_motion"):
    cfg = yaml.safe_load(open(f"configs/{name}.yaml"))
    cfg["data"].update(num_frames=8, height=16, width=16, num_workers=0)
    cfg["train"].update(steps=4, micro_batch_size=2, log_every=2, ckpt_every=2, out_dir=f"{w}/{name}")
    if name == "pretrain_motion":
        cfg["model"].update(preset="tiny", patch_size=[1, 2, 2])
        cfg["train"].update(init_from=None, compile=False)
    else:
        cfg["distill"].update(base_checkpoint=f"{w}/pretrain_motion/export", lora_rank=4)
    yaml.safe_dump(cfg, open(f"{w}/{name}.yaml", "w"), sort_keys=False)
EOF
  pcfg=$w/pretrain_motion.yaml; dcfg=$w/distill_motion.yaml
  eval_args=(--num-prompts 4 --seeds 2 --steps 2 --batch-size 4); modes_clips=2
else
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$w/logs/device.txt"
  # a fresh copy of each config whose out_dir lies under $w, so a rerun never resumes an old run
  "$py" - "$w" <<'EOF'
import sys, yaml
w = sys.argv[1]
for name in ("pretrain_motion", "distill_motion"):
    cfg = yaml.safe_load(open(f"configs/{name}.yaml"))
    cfg["train"]["out_dir"] = f"{w}/{name}"
    if name == "distill_motion":
        cfg["distill"]["base_checkpoint"] = f"{w}/pretrain_motion/export"
    yaml.safe_dump(cfg, open(f"{w}/{name}.yaml", "w"), sort_keys=False)
EOF
  pcfg=$w/pretrain_motion.yaml; dcfg=$w/distill_motion.yaml
  eval_args=(--num-prompts 256 --seeds 3 --steps 30 --batch-size 64); modes_clips=16
fi
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$w/logs/device.txt"

t0=$SECONDS
rc=0; timeout "${PRETRAIN_S:-420}" "${launcher[@]}" tools/train.py --config "$pcfg" > "$w/logs/pretrain.log" 2>&1 \
  || rc=$?
tail -n 5 "$w/logs/pretrain.log"
echo "pretrain: exit $rc after $((SECONDS - t0)) s (124 = stopped at PRETRAIN_S; the last export is the base)" \
  | tee "$w/logs/stages.txt"
[ -f "$w/pretrain_motion/export/model.safetensors" ] || { echo "error: pretraining left no export"; exit 1; }

t1=$SECONDS
rc=0; timeout "${DISTILL_S:-170}" "${launcher[@]}" tools/train.py --config "$dcfg" > "$w/logs/distill.log" 2>&1 \
  || rc=$?
tail -n 5 "$w/logs/distill.log"
echo "distill: exit $rc after $((SECONDS - t1)) s" | tee -a "$w/logs/stages.txt"
[ -f "$w/distill_motion/export/model.safetensors" ] || { echo "error: distillation left no export"; exit 1; }
cp "$w/pretrain_motion/log.jsonl" "$w/logs/pretrain_log.jsonl"
cp "$w/distill_motion/log.jsonl" "$w/logs/distill_log.jsonl"

"$py" tools/export_release.py --src "$w/distill_motion/export" --dst "$w/release/flexivid-small" \
  | tee "$w/logs/release_files.txt"
mkdir -p "$w/eval"
# the weak-vs-full distance runs on the CPU (its noise generator is a CPU one), beside the GPU generation
"$py" tools/eval_modes.py --checkpoint "$w/release/flexivid-small" --num-clips "$modes_clips" \
  --text-cache "$cache" --output "$w/eval/eval_modes.json" > "$w/logs/eval_modes.txt" 2>&1 &
modes_pid=$!
"$py" tools/eval_motion.py --checkpoint "$w/release/flexivid-small" --output "$w/eval" --text-cache "$cache" \
  "${eval_args[@]}" 2>&1 | tee "$w/logs/eval_motion.txt"
wait "$modes_pid" || echo "eval_modes failed: see logs/eval_modes.txt"
cat "$w/logs/eval_modes.txt"

{ cat "$w/logs/device.txt" "$w/logs/stages.txt"
  for f in pretrain distill; do grep -h '"event": "train"' "$w/logs/${f}_log.jsonl" | tail -n 1; done
  tail -n 1 "$w/logs/release_files.txt"; cat "$w/logs/eval_motion.txt" "$w/logs/eval_modes.txt"
  echo "recipe wall-clock: $SECONDS s"; } > "$OUT/summary.txt"
tar czf "$OUT/results.tgz" -C "$w" logs eval
tar czf "$w/model.tgz" -C "$w/release" flexivid-small
sha256sum "$w/model.tgz" | cut -d' ' -f1 > "$w/model.sha256"
split -b 15m "$w/model.tgz" "$OUT/model.tgz.part-"
echo "model.tgz sha256 $(cat "$w/model.sha256")" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
ls -la "$OUT"
