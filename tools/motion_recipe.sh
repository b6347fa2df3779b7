#!/usr/bin/env bash
# The motion recipe on ONE GPU, in calls that each fit one 10-minute command; work under $WORK (/tmp), results in $OUT.
# Default, a controlled experiment: two continued pretrainings from checkpoints/flexivid-small run CONCURRENTLY on
#   the one GPU with the same seed, data, steps (STEPS) and wall-clock cap (PRETRAIN_S): A =
#   configs/pretrain_motion.yaml (model.abs_pos: thw), B = the same with abs_pos none. Each arm is exported in bf16
#   (tools/export_release.py), then scored by tools/eval_motion.py (256 test prompts x 1 seed, 30 steps, CFG 4): B,
#   then A with the paired A - B intervals. Back: base_A.tgz.part-*, base_B.tgz.part-* (15 MiB parts), results.tgz,
#   summary.txt (with each sha256).
# --continue BASE: one continued pretraining of BASE alone on the GPU (its architecture; STEPS, PRETRAIN_S), exported
#   in bf16 and scored like an arm. Back: base_C.tgz.part-*, results.tgz, summary.txt.
# --distill BASE: distils BASE's coarse_time and coarse_space adapters (configs/distill_motion.yaml, DISTILL_STEPS,
#   cap DISTILL_S), exports the bf16 release (base + adapters), then runs tools/eval_modes.py (held-out weak-vs-full
#   distance before / after, on the CPU) beside tools/eval_motion.py (256 test prompts x 3 seeds). With
#   CONTINUE_STEPS > 0, BASE is first continued for that many steps (cap CONTINUE_S) as --continue does.
#   Back: model.tgz.part-*, results.tgz, summary.txt.
# BASE: an export folder (config.json, model.safetensors), or PARTS_DIR/base_A for a call's parts (joined by
# tools/join_release.sh). Pretraining draws timesteps from TS_SAMPLING / TS_LOC / TS_SCALE / TS_SHIFT
# (train.timestep_*; distillation too) and LR (train.lr; pretraining only); unset, the config's. BATCH (train.micro_batch_size) and
# CKPT_EVERY (train.ckpt_every) apply to pretraining and distillation alike. TEXT_CACHE: the caption cache
# (default runs/text_cache/minilm_synthetic.safetensors). DIRCLS (optional): a direction probe
# run on each scored base as `$DIRCLS --checkpoint DIR --output FILE`, e.g.
# DIRCLS='python3 tools/motion_oracle.py classify --device cuda --batch 64 --clips 128'.
# Weights are packed into $OUT as soon as they exist and results.tgz is refreshed after every stage, so a call stopped
# at its limit still brings back what was done; evaluations are skipped when CALL_S (default 545 s) would be passed.
# Speeds seen on an H200 at batch 32: ~4.5 steps/s per run with two runs sharing it, ~7 alone; ~25 s start-up.
#   TS_SAMPLING=uniform TS_SHIFT=3 OUT=runs/gpu1 bash tools/motion_recipe.sh        # carry .whl/, runs/text_cache/
#   bash tools/join_release.sh runs/gpu1 checkpoints base_A                         # the chosen arm, in place
#   OUT=runs/gpu2 STEPS=2500 bash tools/motion_recipe.sh --continue checkpoints/flexivid-small
#   OUT=runs/gpu3 CONTINUE_STEPS=1400 bash tools/motion_recipe.sh --distill checkpoints/flexivid-small
#   TS_SAMPLING=uniform TS_SHIFT=3 OUT=runs/gpu4 bash tools/motion_recipe.sh --distill checkpoints/flexivid-small
#   OUT=/tmp/s1 bash tools/motion_recipe.sh --smoke; OUT=/tmp/s2 bash tools/motion_recipe.sh --smoke --distill /tmp/s1/base_A
set -euo pipefail
smoke=0; mode=ab; src=""
while [ $# -gt 0 ]; do
  case $1 in
    --smoke) smoke=1 ;;
    --continue|--distill)
      [ "$mode" = ab ] || { echo "error: give one of --continue BASE and --distill BASE"; exit 2; }
      mode=${1#--}; src=${2:?$1 needs an export folder or PARTS_DIR/base_A}; shift ;;
    *) echo "error: unknown argument $1 (allowed: --smoke, --continue BASE, --distill BASE)"; exit 2 ;;
  esac
  shift
done
OUT=${OUT:?set OUT to the output folder}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.tgz.part-* "$OUT/results.tgz" "$OUT/summary.txt"
# never inside the repository: a machine that re-copies the tree between calls must not take the run's files with it
w=${WORK:-/tmp/flexivid_motion_recipe}; rm -rf "$w"; mkdir -p "$w/logs" "$w/eval" "$w/configs"
cache=${TEXT_CACHE:-runs/text_cache/minilm_synthetic.safetensors}
[ -f "$cache" ] || { echo "error: text cache $cache not found (build it where MiniLM is: python" \
  "tools/build_text_cache.py --config configs/pretrain_motion.yaml; then carry runs/text_cache)"; exit 2; }
cache=$(cd "$(dirname "$cache")" && pwd)/$(basename "$cache")
py=${PYTHON:-python3}
if [ -n "$src" ]; then  # the base, checked before anything slow
  if [ -f "$src/config.json" ] && [ -f "$src/model.safetensors" ]; then base=$(cd "$src" && pwd)
  else bash tools/join_release.sh "$(dirname "$src")" "$w/base" "$(basename "$src")"; base=$w/base/flexivid-small
  fi
fi
if ! "$py" -c "import importlib.util as u, sys; sys.exit(u.find_spec('deepspeed') is None)" \
  && ls .whl/*.whl >/dev/null 2>&1; then  # the GPU machine's deepspeed comes as carried wheels
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export NCCL_NVLS_ENABLE=0 TQDM_DISABLE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
budget=${CALL_S:-545}
left() { echo $((budget - SECONDS)); }
summary() { tee -a "$OUT/summary.txt"; }
pack() { tar czf "$OUT/results.tgz" -C "$w" logs eval configs; }
ship() {  # ship NAME DIR: DIR as NAME.tgz (a folder flexivid-small inside) in 15 MiB parts, its sha256 in summary
  tar czf "$w/$1.tgz" -C "$(dirname "$2")" "$(basename "$2")"
  split -b 15m "$w/$1.tgz" "$OUT/$1.tgz.part-"
  echo "$1.tgz sha256 $(sha256sum "$w/$1.tgz" | cut -d' ' -f1) ($(du -b "$w/$1.tgz" | cut -f1) bytes)" | summary
}
launch() {  # launch LIMIT_S PORT NAME: one training process on the one device, stopped after LIMIT_S seconds
  if [ "$smoke" = 1 ]; then  # CPU: tools/train.py alone is one process
    MASTER_PORT=$2 timeout -k 20 "$1" "$py" tools/train.py --config "$w/configs/$3.yaml" > "$w/logs/$3.log" 2>&1
  else  # = deepspeed --num_gpus 1 --master_port PORT, with this Python; timeout signals the launcher's whole group
    timeout -k 20 "$1" "$py" -m deepspeed.launcher.runner --num_gpus 1 --master_port "$2" tools/train.py \
      --config "$w/configs/$3.yaml" > "$w/logs/$3.log" 2>&1
  fi
}
export_step() { "$py" -c "import sys; from flexivid.models.serialization import read_spec
print(read_spec(sys.argv[1]).provenance.get('step'))" "$1"; }
{ [ "$smoke" = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); $(date -u +%FT%TZ)"; } | summary

configure() {  # configure NAME KIND BASE STEPS: a fresh $w/configs/NAME.yaml, checked by the trainer's preflight
  # KIND: thw | none (the arms' model.abs_pos), continue (pretraining from BASE in its architecture), distill
  "$py" - "$w" "$smoke" "$cache" "$@" <<'EOF' | summary
import os, sys, yaml
from flexivid.config import config_to_dict, load_config
from flexivid.training.preflight import preflight
w, smoke, cache, (name, kind, base, steps) = sys.argv[1], sys.argv[2] == "1", sys.argv[3], sys.argv[4:8]
env = {"timestep_sampling": ("TS_SAMPLING", str), "timestep_loc": ("TS_LOC", float),
       "timestep_scale": ("TS_SCALE", float), "timestep_shift": ("TS_SHIFT", float)}
if kind == "distill":
    cfg = yaml.safe_load(open("configs/distill_motion.yaml"))
    cfg["distill"]["base_checkpoint"] = base
else:
    cfg = yaml.safe_load(open("configs/pretrain_motion.yaml"))
    env["lr"] = ("LR", float)  # pretraining only: distillation keeps its own rate
cfg["train"].update({k: tp(os.environ[e]) for k, (e, tp) in env.items() if os.environ.get(e)})
if kind == "continue":  # base weights only: adapters are distilled afterwards
    from flexivid.models.serialization import read_spec
    cfg["model"] = {k: v for k, v in config_to_dict(read_spec(base).model).items() if k != "modes"}
    cfg["train"]["init_from"] = base
    cfg["data"]["num_workers"] = 14  # alone on the machine
elif kind != "distill":
    cfg["model"]["abs_pos"] = kind
sizes = {"micro_batch_size": "BATCH", "ckpt_every": "CKPT_EVERY"}  # both kinds
cfg["train"].update({k: int(os.environ[e]) for k, e in sizes.items() if os.environ.get(e)})
if steps:
    cfg["train"]["steps"] = int(steps)
cfg["train"]["out_dir"] = f"{w}/{name}"
cfg["text"]["cache_path"] = cache
if smoke:  # tiny trunk, 8x16x16 clips, 4 steps
    cfg["data"].update(num_frames=8, height=16, width=16, num_workers=0)
    cfg["train"].update(steps=4, micro_batch_size=2, log_every=2, ckpt_every=2, compile=False)
    if kind == "distill":
        cfg["distill"]["lora_rank"] = 4
    elif kind != "continue":
        cfg["model"].update(preset="tiny", patch_size=[1, 2, 2])
        cfg["train"]["init_from"] = None
path = f"{w}/configs/{name}.yaml"
yaml.safe_dump(cfg, open(path, "w"), sort_keys=False)
try:
    preflight(load_config(path), path, 1, "cpu" if smoke else "cuda")
except (ValueError, OSError) as e:  # the trainer's one-line errors
    sys.exit(f"error: {' '.join(str(e).split())}")
t = cfg["train"]
print(f"{name}: {t['steps']} steps x {t['micro_batch_size']}, lr {t['lr']}, timesteps "
      f"{t.get('timestep_sampling', 'logit_normal')} loc {t.get('timestep_loc', 0.0)} "
      f"scale {t.get('timestep_scale', 1.0)} shift {t.get('timestep_shift', 1.0)}, from "
      + (base if kind == "distill" else f"{t['init_from'] or 'scratch'}, abs_pos {cfg['model'].get('abs_pos')}"))
EOF
}
finish() {  # finish NAME: the run's log into logs/ and its export checked; sets $step to the export's step
  local run=$w/$1
  cp "$run/log.jsonl" "$w/logs/$1_log.jsonl" 2>/dev/null || true
  [ -f "$run/export/model.safetensors" ] || { tail -n 5 "$w/logs/$1.log"; pack
    echo "error: $1 left no export (see logs/$1.log)" | summary; exit 1; }
  step=$(export_step "$run/export")
  echo "$1: export at step $step; last log: $(grep -h '"event": "train"' "$run/log.jsonl" | tail -n 1)" | summary
}
train_one() {  # train_one NAME PORT LIMIT_S: one run alone on the device
  local t0=$SECONDS rc=0
  launch "$3" "$2" "$1" || rc=$?
  echo "$1: exit $rc; $((SECONDS - t0)) s (124: stopped at $3 s; the last export, every ckpt_every steps, counts)" \
    | summary
  finish "$1"
}
release() {  # release NAME EXPORT: the bf16 copy in $w/release_NAME/flexivid-small, shipped as NAME.tgz parts
  "$py" tools/export_release.py --checkpoint "$2" --output "$w/release_$1/flexivid-small" > "$w/logs/release_$1.txt"
  tail -n 1 "$w/logs/release_$1.txt" | summary
  ship "$1" "$w/release_$1/flexivid-small"
  pack
}
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
probe() {  # probe NAME CHECKPOINT: $DIRCLS (direction discrimination per t), when set and time is left
  [ -n "${DIRCLS:-}" ] || { echo "direction probe $1: not run (DIRCLS unset)" | summary; return; }
  [ "$(left)" -gt 30 ] || { echo "direction probe $1: skipped, $(left) s left" | summary; return; }
  timeout -k 10 "$(( $(left) - 20 ))" $DIRCLS --checkpoint "$2" --output "$w/eval/$1/direction_probe.jsonl" \
    > "$w/logs/direction_probe_$1.txt" 2>&1 || echo "direction probe $1: exit $? (see logs/direction_probe_$1.txt)" \
    | summary
  tail -n 20 "$w/logs/direction_probe_$1.txt" | summary
  pack
}

case $mode in
ab)
  configure pretrain_A thw "" "${STEPS:-}"
  configure pretrain_B none "" "${STEPS:-}"
  t0=$SECONDS  # A and B side by side on the one GPU, under the same wall-clock cap
  launch "${PRETRAIN_S:-400}" 29611 pretrain_A & pid_a=$!
  launch "${PRETRAIN_S:-400}" 29621 pretrain_B & pid_b=$!
  rc_a=0; wait $pid_a || rc_a=$?
  rc_b=0; wait $pid_b || rc_b=$?
  echo "pretrain A (abs_pos thw): exit $rc_a; B (abs_pos none): exit $rc_b; $((SECONDS - t0)) s" \
    "(124: stopped at PRETRAIN_S=${PRETRAIN_S:-400}; the last export, every ckpt_every steps, counts)" | summary
  finish pretrain_A; step_a=$step; release base_A "$w/pretrain_A/export"
  finish pretrain_B; release base_B "$w/pretrain_B/export"
  [ "$step_a" = "$step" ] \
    || echo "WARNING: A and B exported at different steps: the A - B comparison is not at equal steps" | summary
  evaluate B "$w/release_base_B/flexivid-small" "${prompts1[@]}"
  paired=(); [ -f "$w/eval/B/eval_motion.json" ] && paired=(--compare-to "$w/eval/B/eval_motion.json")
  evaluate A "$w/release_base_A/flexivid-small" "${prompts1[@]}" "${paired[@]}"
  table B A
  probe B "$w/release_base_B/flexivid-small"
  probe A "$w/release_base_A/flexivid-small"
  ;;
continue)
  configure continue continue "$base" "${STEPS:-}"
  train_one continue 29641 "${PRETRAIN_S:-400}"
  release base_C "$w/continue/export"
  evaluate C "$w/release_base_C/flexivid-small" "${prompts1[@]}"
  table C
  probe C "$w/release_base_C/flexivid-small"
  ;;
distill)
  if [ "${CONTINUE_STEPS:-0}" -gt 0 ]; then
    configure continue continue "$base" "$CONTINUE_STEPS"
    train_one continue 29641 "${CONTINUE_S:-270}"
    base=$w/continue/export
  fi
  configure distill distill "$base" "${DISTILL_STEPS:-}"
  train_one distill 29631 "${DISTILL_S:-200}"
  release model "$w/distill/export"
  # the weak-vs-full distance on the CPU (its noise generator is a CPU one), beside the GPU generation
  mkdir -p "$w/eval/release"
  timeout -k 10 "$(( $(left) > 30 ? $(left) : 30 ))" "$py" tools/eval_modes.py \
    --checkpoint "$w/release_model/flexivid-small" --num-clips "$modes_clips" --text-cache "$cache" \
    --output "$w/eval/release/eval_modes.json" > "$w/logs/eval_modes.txt" 2>&1 & modes_pid=$!
  evaluate release "$w/release_model/flexivid-small" "${prompts3[@]}"
  table release
  wait "$modes_pid" || echo "eval_modes: exit $? (see logs/eval_modes.txt)" | summary
  { echo "== eval_modes"; cat "$w/logs/eval_modes.txt"; } | summary
  ;;
esac
pack
echo "recipe wall-clock: $SECONDS s" | summary
ls -la "$OUT"
n=$(find "$OUT" -type f | wc -l); total=$(du -cb "$OUT"/* | tail -n 1 | cut -f1)
[ "$n" -le 8 ] && [ "$total" -le $((64 * 1024 * 1024)) ] \
  || echo "WARNING: $n files, $total bytes in $OUT: over the 8 files / 64 MiB that come back" | summary
