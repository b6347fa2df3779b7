#!/usr/bin/env bash
# The motion recipe on ONE GPU, in two calls that each fit one 10-minute command; work under $WORK (/tmp), results
# in $OUT.
# Call 1 (default), a controlled experiment: two continued pretrainings from checkpoints/flexivid-small run
#   CONCURRENTLY on the one GPU with the same seed, data, steps (STEPS) and wall-clock cap (PRETRAIN_S):
#   A = configs/pretrain_motion.yaml (model.abs_pos: thw), B = the same with abs_pos none. Both draw training
#   timesteps from TS_SAMPLING / TS_LOC / TS_SCALE / TS_SHIFT (train.timestep_*; unset: the config's). Each arm is
#   exported in bf16 (tools/export_release.py), then scored by tools/eval_motion.py (256 test prompts x 1 seed, 30
#   steps, CFG 4): B, then A with the paired A - B intervals. Optional direction probe per arm:
#   `$DIRCLS --checkpoint DIR --output FILE` (e.g. the diffusion-classifier tool), if DIRCLS is set.
#   Back: base_A.tgz.part-*, base_B.tgz.part-* (15 MiB parts), results.tgz, summary.txt (with each sha256).
# Call 2 (--distill BASE): BASE is an export folder (config.json, model.safetensors), or PARTS_DIR/base_A for call 1's
#   parts (joined by tools/join_release.sh). Distils its coarse_time and coarse_space adapters
#   (configs/distill_motion.yaml, cap DISTILL_S), exports the bf16 release (base + adapters), then runs
#   tools/eval_modes.py (held-out weak-vs-full distance before / after, on the CPU) beside tools/eval_motion.py
#   (256 test prompts x 3 seeds). Back: model.tgz.part-*, results.tgz, summary.txt.
# Weights are packed into $OUT as soon as they exist and results.tgz is refreshed after every stage, so a call stopped
# at its limit still brings back what was done; later stages are skipped when CALL_S (default 545 s) would be passed.
#   TS_SAMPLING=uniform TS_SHIFT=3 OUT=runs/gpu1 bash tools/motion_recipe.sh        # carry .whl/, runs/text_cache/
#   bash tools/join_release.sh runs/gpu1 checkpoints base_A                         # the chosen arm, in place
#   OUT=runs/gpu2 bash tools/motion_recipe.sh --distill checkpoints/flexivid-small
#   OUT=/tmp/s1 bash tools/motion_recipe.sh --smoke; OUT=/tmp/s2 bash tools/motion_recipe.sh --smoke --distill /tmp/s1/base_A
set -euo pipefail
smoke=0; distill=""
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1 ;;
    --distill) distill=${2:?--distill needs an export folder or PARTS_DIR/base_A}; shift ;;
    *) echo "error: unknown argument $1 (allowed: --smoke, --distill BASE)"; exit 2 ;;
  esac
  shift
done
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.tgz.part-* "$OUT/results.tgz" "$OUT/summary.txt"
# never inside the repository: a machine that re-copies the tree between calls must not take the run's files with it
w=${WORK:-/tmp/flexivid_motion_recipe}; rm -rf "$w"; mkdir -p "$w/logs" "$w/eval"
cache=runs/text_cache/minilm_synthetic.safetensors
[ -f "$cache" ] || { echo "error: $cache not found (build it where MiniLM is: python tools/build_text_cache.py" \
  "--config configs/pretrain_motion.yaml; then carry runs/text_cache)"; exit 2; }
if [ -n "$distill" ]; then  # the base to distil, checked before anything slow
  if [ -f "$distill/config.json" ] && [ -f "$distill/model.safetensors" ]; then base=$(cd "$distill" && pwd)
  else bash tools/join_release.sh "$(dirname "$distill")" "$w/base" "$(basename "$distill")"; base=$w/base/flexivid-small
  fi
fi
if ls .whl/*.whl >/dev/null 2>&1; then  # the GPU machine's deepspeed comes as carried wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export NCCL_NVLS_ENABLE=0 TQDM_DISABLE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
py=${PYTHON:-python3}
budget=${CALL_S:-545}
left() { echo $((budget - SECONDS)); }
summary() { tee -a "$OUT/summary.txt"; }
pack() { tar czf "$OUT/results.tgz" -C "$w" logs eval configs; }
ship() {  # ship NAME DIR: DIR as NAME.tgz (a folder flexivid-small inside) in 15 MiB parts, its sha256 in summary
  tar czf "$w/$1.tgz" -C "$(dirname "$2")" "$(basename "$2")"
  split -b 15m "$w/$1.tgz" "$OUT/$1.tgz.part-"
  echo "$1.tgz sha256 $(sha256sum "$w/$1.tgz" | cut -d' ' -f1) ($(du -b "$w/$1.tgz" | cut -f1) bytes)" | summary
}
launch() {  # launch LIMIT_S PORT CONFIG LOG: one training process on the one device, stopped after LIMIT_S seconds
  if [ "$smoke" = 1 ]; then  # CPU: tools/train.py alone is one process
    MASTER_PORT=$2 timeout -k 20 "$1" "$py" tools/train.py --config "$3" > "$4" 2>&1
  else  # = deepspeed --num_gpus 1 --master_port PORT, with this Python; timeout signals the launcher's whole group
    timeout -k 20 "$1" "$py" -m deepspeed.launcher.runner --num_gpus 1 --master_port "$2" tools/train.py \
      --config "$3" > "$4" 2>&1
  fi
}
export_step() { "$py" -c "import sys; from flexivid.models.serialization import read_spec
print(read_spec(sys.argv[1]).provenance.get('step'))" "$1"; }
{ [ "$smoke" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(date -u +%FT%TZ)"; } | summary

# Fresh configs under $w/configs (a rerun never resumes an old run), checked by the trainer's own preflight.
mkdir -p "$w/configs"
"$py" - "$w" "$smoke" "${base:-}" <<'EOF'
import os, sys, yaml
from flexivid.config import load_config
from flexivid.training.preflight import preflight
w, smoke, base = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
env = {"timestep_sampling": ("TS_SAMPLING", str), "timestep_loc": ("TS_LOC", float),
       "timestep_scale": ("TS_SCALE", float), "timestep_shift": ("TS_SHIFT", float), "steps": ("STEPS", int)}
runs = {}
if base:
    d = yaml.safe_load(open("configs/distill_motion.yaml"))
    d["distill"]["base_checkpoint"] = base
    if os.environ.get("DISTILL_STEPS"):
        d["train"]["steps"] = int(os.environ["DISTILL_STEPS"])
    runs["distill"] = d
else:
    for arm, abs_pos in (("A", "thw"), ("B", "none")):
        c = yaml.safe_load(open("configs/pretrain_motion.yaml"))
        c["model"]["abs_pos"] = abs_pos
        c["train"].update({k: tp(os.environ[e]) for k, (e, tp) in env.items() if os.environ.get(e)})
        runs[f"pretrain_{arm}"] = c
for name, cfg in runs.items():
    cfg["train"]["out_dir"] = f"{w}/{name}"
    if smoke:  # tiny trunk, 8x16x16 clips, 4 steps
        cfg["data"].update(num_frames=8, height=16, width=16, num_workers=0)
        cfg["train"].update(steps=4, micro_batch_size=2, log_every=2, ckpt_every=2)
        if name == "distill":
            cfg["distill"]["lora_rank"] = 4
        else:
            cfg["model"].update(preset="tiny", patch_size=[1, 2, 2])
            cfg["train"].update(init_from=None, compile=False)
    path = f"{w}/configs/{name}.yaml"
    yaml.safe_dump(cfg, open(path, "w"), sort_keys=False)
    preflight(load_config(path), path, 1, "cpu" if smoke else "cuda")
    t = cfg["train"]
    print(f"{name}: {t['steps']} steps x {t['micro_batch_size']}, lr {t['lr']}, timesteps "
          f"{t.get('timestep_sampling', 'logit_normal')} loc {t.get('timestep_loc', 0.0)} "
          f"scale {t.get('timestep_scale', 1.0)} shift {t.get('timestep_shift', 1.0)}"
          + (f", abs_pos {cfg['model']['abs_pos']}" if "model" in cfg else ""))
EOF
if [ "$smoke" = 1 ]; then
  size=(--steps 2 --batch-size 4); prompts1=(--num-prompts 4 --seeds 1); prompts3=(--num-prompts 4 --seeds 2)
  modes_clips=2
else
  size=(--steps 30 --batch-size 64); prompts1=(--num-prompts 256 --seeds 1); prompts3=(--num-prompts 256 --seeds 3)
  modes_clips=16
fi
evaluate() {  # evaluate NAME CHECKPOINT ARGS...: tools/eval_motion.py into $w/eval/NAME, within the call's budget
  local name=$1 ck=$2; shift 2
  mkdir -p "$w/eval/$name"
  [ "$(left)" -gt 30 ] || { echo "eval_motion $name: skipped, $(left) s left of CALL_S=$budget" | summary; return; }
  timeout -k 10 "$(left)" "$py" tools/eval_motion.py --checkpoint "$ck" --output "$w/eval/$name" \
    --text-cache "$cache" "${size[@]}" "$@" > "$w/logs/eval_motion_$name.txt" 2>&1 \
    || echo "eval_motion $name: exit $? (see logs/eval_motion_$name.txt)" | summary
  { echo "== eval_motion $name ($ck)"; cat "$w/logs/eval_motion_$name.txt"; } | summary
  pack
}
table() {  # table NAME...: the evaluated runs as a markdown table (docs, model card) in the summary
  local f=() n; for n in "$@"; do [ -f "$w/eval/$n/eval_motion.json" ] && f+=("$w/eval/$n/eval_motion.json"); done
  [ ${#f[@]} -eq 0 ] || "$py" tools/eval_motion.py --table "${f[@]}" | summary
}

if [ -z "$distill" ]; then
  t0=$SECONDS  # A and B side by side on the one GPU, under the same wall-clock cap
  launch "${PRETRAIN_S:-400}" 29611 "$w/configs/pretrain_A.yaml" "$w/logs/pretrain_A.log" & pid_a=$!
  launch "${PRETRAIN_S:-400}" 29621 "$w/configs/pretrain_B.yaml" "$w/logs/pretrain_B.log" & pid_b=$!
  rc_a=0; wait $pid_a || rc_a=$?
  rc_b=0; wait $pid_b || rc_b=$?
  echo "pretrain A (abs_pos thw): exit $rc_a; B (abs_pos none): exit $rc_b; $((SECONDS - t0)) s" \
    "(124: stopped at PRETRAIN_S=${PRETRAIN_S:-400}; the last export, every ckpt_every steps, counts)" | summary
  declare -A steps
  for arm in A B; do
    run=$w/pretrain_$arm
    cp "$run/log.jsonl" "$w/logs/pretrain_${arm}_log.jsonl" 2>/dev/null || true
    [ -f "$run/export/model.safetensors" ] || { tail -n 5 "$w/logs/pretrain_$arm.log"; pack
      echo "error: pretrain_$arm left no export (see logs/pretrain_$arm.log)" | summary; exit 1; }
    steps[$arm]=$(export_step "$run/export")
    echo "arm $arm: export at step ${steps[$arm]}; last log: $(grep -h '"event": "train"' "$run/log.jsonl" \
      | tail -n 1)" | summary
    "$py" tools/export_release.py --checkpoint "$run/export" --output "$w/release_$arm/flexivid-small" \
      > "$w/logs/release_$arm.txt"
    ship "base_$arm" "$w/release_$arm/flexivid-small"
  done
  [ "${steps[A]}" = "${steps[B]}" ] \
    || echo "WARNING: A and B exported at different steps: the A - B comparison is not at equal steps" | summary
  pack
  evaluate B "$w/release_B/flexivid-small" "${prompts1[@]}"
  paired=(); [ -f "$w/eval/B/eval_motion.json" ] && paired=(--compare-to "$w/eval/B/eval_motion.json")
  evaluate A "$w/release_A/flexivid-small" "${prompts1[@]}" "${paired[@]}"
  table B A
  # HOOK, direction discrimination per t (a diffusion classifier): not part of the recipe until such a tool exists
  # in the repo; DIRCLS names its command, which must take --checkpoint DIR --output FILE.
  if [ -n "${DIRCLS:-}" ]; then
    for arm in B A; do
      [ "$(left)" -gt 30 ] || { echo "direction probe $arm: skipped, $(left) s left" | summary; continue; }
      timeout -k 10 "$(( $(left) - 20 ))" $DIRCLS --checkpoint "$w/release_$arm/flexivid-small" \
        --output "$w/eval/$arm/direction_probe.jsonl" > "$w/logs/direction_probe_$arm.txt" 2>&1 \
        || echo "direction probe $arm: exit $? (see logs/direction_probe_$arm.txt)" | summary
      tail -n 20 "$w/logs/direction_probe_$arm.txt" | summary
    done
  else
    echo "direction probe: not run (DIRCLS unset)" | summary
  fi
else
  t0=$SECONDS
  rc=0; launch "${DISTILL_S:-200}" 29631 "$w/configs/distill.yaml" "$w/logs/distill.log" || rc=$?
  cp "$w/distill/log.jsonl" "$w/logs/distill_log.jsonl" 2>/dev/null || true
  echo "distill of $base: exit $rc; $((SECONDS - t0)) s (124: stopped at DISTILL_S=${DISTILL_S:-200})" | summary
  [ -f "$w/distill/export/model.safetensors" ] || { tail -n 5 "$w/logs/distill.log"; pack
    echo "error: distillation left no export (see logs/distill.log)" | summary; exit 1; }
  echo "distilled export at step $(export_step "$w/distill/export"); last log: $(grep -h '"event": "train"' \
    "$w/distill/log.jsonl" | tail -n 1)" | summary
  "$py" tools/export_release.py --checkpoint "$w/distill/export" --output "$w/release/flexivid-small" \
    | tee "$w/logs/release_files.txt" | tail -n 1 | summary
  ship model "$w/release/flexivid-small"
  pack
  # the weak-vs-full distance on the CPU (its noise generator is a CPU one), beside the GPU generation
  mkdir -p "$w/eval/release"
  timeout -k 10 "$(( $(left) > 30 ? $(left) : 30 ))" "$py" tools/eval_modes.py --checkpoint "$w/release/flexivid-small" \
    --num-clips "$modes_clips" --text-cache "$cache" --output "$w/eval/release/eval_modes.json" \
    > "$w/logs/eval_modes.txt" 2>&1 & modes_pid=$!
  evaluate release "$w/release/flexivid-small" "${prompts3[@]}"
  table release
  wait "$modes_pid" || echo "eval_modes: exit $? (see logs/eval_modes.txt)" | summary
  { echo "== eval_modes"; cat "$w/logs/eval_modes.txt"; } | summary
fi
pack
echo "recipe wall-clock: $SECONDS s" | summary
ls -la "$OUT"
n=$(find "$OUT" -type f | wc -l); total=$(du -cb "$OUT"/* | tail -n 1 | cut -f1)
[ "$n" -le 8 ] && [ "$total" -le $((64 * 1024 * 1024)) ] \
  || echo "WARNING: $n files, $total bytes in $OUT: over the 8 files / 64 MiB that come back" | summary
