#!/usr/bin/env bash
# The motion recipe on ONE GPU, end to end, as a controlled experiment; everything under $OUT:
#   1. two continued pretrainings from checkpoints/flexivid-small, CONCURRENTLY on the one GPU for the same
#      wall-clock (PRETRAIN_S, default 400 s), seed, data and steps, both with uniform t:
#      A = configs/pretrain_motion.yaml (model.abs_pos: thw), B = the same config with abs_pos none (control);
#      a run still going at PRETRAIN_S stops, and its last export (every 250 steps) counts
#   2. distillation of A's coarse_time (2,4,4) and coarse_space (1,8,8) adapters: configs/distill_motion.yaml
#      (DISTILL_S, default 150 s), then A's bf16 release export (tools/export_release.py)
#   3. tools/eval_motion.py, full schedule, 30 steps, CFG 4: B on 256 test prompts x 1 seed, A on the same 256
#      x 3 seeds with the paired A - B difference (seed 0) per attribute and coherence metric (95% intervals);
#      tools/eval_modes.py: A's held-out weak-vs-full distance before / after distillation (on the CPU, meanwhile)
# Files back (5): model.tgz.part-a* (A's release, 15 MiB parts; tools/join_release.sh joins them), results.tgz
# (logs, eval JSONs, samples), summary.txt.
#   OUT=runs/gpu_out bash tools/motion_recipe.sh           # GPU; carry .whl/ (deepspeed wheels) and runs/text_cache/
#   OUT=/tmp/smoke bash tools/motion_recipe.sh --smoke     # CPU, tiny model and sizes, ~8 minutes on 2 cores
set -euo pipefail
smoke=0; [ "${1:-}" = "--smoke" ] && smoke=1
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# work outside the repository: a machine that re-copies the tree between calls must not wipe a detached run's files
w=${WORK:-/tmp/flexivid_motion_recipe}; rm -rf "$w"; mkdir -p "$w/logs"
cache=runs/text_cache/minilm_synthetic.safetensors
if ls .whl/*.whl >/dev/null 2>&1; then  # the GPU machine's deepspeed comes as carried wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export NCCL_NVLS_ENABLE=0 TQDM_DISABLE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}
launch() {  # launch LIMIT_S PORT CONFIG: one training process on the one device, stopped after LIMIT_S seconds
  if [ "$smoke" = 1 ]; then  # CPU: tools/train.py alone runs one process (a free rendezvous port is picked)
    timeout "$1" "$py" tools/train.py --config "$3"
  else  # = deepspeed --num_gpus 1 --master_port PORT, with this Python
    timeout "$1" "$py" -m deepspeed.launcher.runner --num_gpus 1 --master_port "$2" tools/train.py --config "$3"
  fi
}
[ -f "$cache" ] || "$py" tools/build_text_cache.py --config configs/pretrain_motion.yaml
[ "$smoke" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
  | tee "$w/logs/device.txt"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$w/logs/device.txt"
# Fresh copies of the configs with out_dirs under $w (a rerun never resumes an old run): A, its control B
# (abs_pos none, nothing else changed) and A's distillation; --smoke shrinks them (tiny trunk, 8x16x16, 4 steps).
"$py" - "$w" "$smoke" <<'EOF'
import sys, yaml
w, smoke = sys.argv[1], sys.argv[2] == "1"
a = yaml.safe_load(open("configs/pretrain_motion.yaml"))
b = yaml.safe_load(open("configs/pretrain_motion.yaml"))
b["model"]["abs_pos"] = "none"
d = yaml.safe_load(open("configs/distill_motion.yaml"))
for name, cfg in (("pretrain_motion", a), ("pretrain_control", b), ("distill_motion", d)):
    cfg["train"]["out_dir"] = f"{w}/{name}"
    if smoke:
        cfg["data"].update(num_frames=8, height=16, width=16, num_workers=0)
        cfg["train"].update(steps=4, micro_batch_size=2, log_every=2, ckpt_every=2)
        if name != "distill_motion":
            cfg["model"].update(preset="tiny", patch_size=[1, 2, 2])
            cfg["train"].update(init_from=None, compile=False)
    if name == "distill_motion":
        cfg["distill"]["base_checkpoint"] = f"{w}/pretrain_motion/export"
        if smoke:
            cfg["distill"]["lora_rank"] = 4
    yaml.safe_dump(cfg, open(f"{w}/{name}.yaml", "w"), sort_keys=False)
EOF
if [ "$smoke" = 1 ]; then
  size=(--steps 2 --batch-size 4); prompts_a=(--num-prompts 4 --seeds 2); prompts_b=(--num-prompts 4 --seeds 1)
  modes_clips=2
else
  size=(--steps 30 --batch-size 64); prompts_a=(--num-prompts 256 --seeds 3); prompts_b=(--num-prompts 256 --seeds 1)
  modes_clips=16
fi

t0=$SECONDS  # A and B side by side on the one GPU, under the same wall-clock limit
launch "${PRETRAIN_S:-400}" 29611 "$w/pretrain_motion.yaml" > "$w/logs/pretrain_A.log" 2>&1 & pid_a=$!
launch "${PRETRAIN_S:-400}" 29621 "$w/pretrain_control.yaml" > "$w/logs/pretrain_B.log" 2>&1 & pid_b=$!
rc_a=0; wait $pid_a || rc_a=$?
rc_b=0; wait $pid_b || rc_b=$?
for r in A B; do tail -n 2 "$w/logs/pretrain_$r.log"; done
echo "pretrain A (abs_pos thw): exit $rc_a; B (control, abs_pos none): exit $rc_b; $((SECONDS - t0)) s" \
  "(124 = stopped at PRETRAIN_S; the last export counts)" | tee "$w/logs/stages.txt"
for r in pretrain_motion pretrain_control; do
  [ -f "$w/$r/export/model.safetensors" ] || { echo "error: $r left no export"; exit 1; }
  cp "$w/$r/log.jsonl" "$w/logs/${r}_log.jsonl"
done

t1=$SECONDS
rc=0; launch "${DISTILL_S:-150}" 29631 "$w/distill_motion.yaml" > "$w/logs/distill.log" 2>&1 || rc=$?
tail -n 2 "$w/logs/distill.log"
echo "distill A: exit $rc; $((SECONDS - t1)) s" | tee -a "$w/logs/stages.txt"
[ -f "$w/distill_motion/export/model.safetensors" ] || { echo "error: distillation left no export"; exit 1; }
cp "$w/distill_motion/log.jsonl" "$w/logs/distill_motion_log.jsonl"
"$py" tools/export_release.py --checkpoint "$w/distill_motion/export" --output "$w/release/flexivid-small" \
  | tee "$w/logs/release_files.txt"

mkdir -p "$w/eval/A" "$w/eval/B"
# the weak-vs-full distance runs on the CPU (its noise generator is a CPU one), beside the GPU generation
"$py" tools/eval_modes.py --checkpoint "$w/release/flexivid-small" --num-clips "$modes_clips" \
  --text-cache "$cache" --output "$w/eval/A/eval_modes.json" > "$w/logs/eval_modes.txt" 2>&1 &
modes_pid=$!
"$py" tools/eval_motion.py --checkpoint "$w/pretrain_control/export" --output "$w/eval/B" --text-cache "$cache" \
  "${prompts_b[@]}" "${size[@]}" 2>&1 | tee "$w/logs/eval_motion_B.txt"
"$py" tools/eval_motion.py --checkpoint "$w/release/flexivid-small" --output "$w/eval/A" --text-cache "$cache" \
  --compare-to "$w/eval/B/eval_motion.json" "${prompts_a[@]}" "${size[@]}" 2>&1 | tee "$w/logs/eval_motion_A.txt"
wait "$modes_pid" || echo "eval_modes failed: see logs/eval_modes.txt"
cat "$w/logs/eval_modes.txt"

{ cat "$w/logs/device.txt" "$w/logs/stages.txt"
  for f in pretrain_motion pretrain_control distill_motion; do
    echo "$f: $(grep -h '"event": "train"' "$w/logs/${f}_log.jsonl" | tail -n 1)"; done
  tail -n 1 "$w/logs/release_files.txt"
  echo "== B (control: abs_pos none), $w/pretrain_control/export"; cat "$w/logs/eval_motion_B.txt"
  echo "== A (abs_pos thw, distilled release)"; cat "$w/logs/eval_motion_A.txt" "$w/logs/eval_modes.txt"
  echo "recipe wall-clock: $SECONDS s"; } > "$OUT/summary.txt"
tar czf "$OUT/results.tgz" -C "$w" logs eval
tar czf "$w/model.tgz" -C "$w/release" flexivid-small
sha256sum "$w/model.tgz" | cut -d' ' -f1 > "$w/model.sha256"
split -b 15m "$w/model.tgz" "$OUT/model.tgz.part-"
echo "model.tgz sha256 $(cat "$w/model.sha256")" >> "$OUT/summary.txt"
cat "$OUT/summary.txt"
ls -la "$OUT"
