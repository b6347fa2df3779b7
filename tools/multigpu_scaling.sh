#!/usr/bin/env bash
# DeepSpeed scaling of a pretraining config on one multi-GPU machine, then a cross-count resume:
#   ZeRO-2 and ZeRO-3, each on 1 GPU and on all GPUs (STEPS steps, a log record every LOG_EVERY steps);
#   the all-GPU ZeRO-2 checkpoint (step STEPS) resumed on 1 GPU for RESUME_STEPS more steps (universal checkpoint).
# Writes OUT_DIR/scaling.md (table: steady-state samples/s, per GPU, efficiency vs 1 GPU, peak memory) and each run's
# log.jsonl as OUT_DIR/<run>.jsonl, plus OUT_DIR/train_tail.log (each run's last output lines).
#   bash tools/multigpu_scaling.sh OUT_DIR          # STEPS=60 LOG_EVERY=10 RESUME_STEPS=20 by default
# CONFIG=<yaml> measures another run config (default configs/pretrain_synthetic.yaml); BASE_CKPT=<dir> sets a distill
# config's distill.base_checkpoint; RESUME_STEPS=0 skips the cross-count resume.
# Needs deepspeed importable by python3 (on a machine without it: bash tools/remote_run.sh bash tools/multigpu_scaling.sh
# OUT_DIR, with its wheels in .whl/) and the config's text cache (runs/text_cache/).
set -uo pipefail
out=${1:?usage: tools/multigpu_scaling.sh OUT_DIR}
steps=${STEPS:-60}
every=${LOG_EVERY:-10}
resume_steps=${RESUME_STEPS:-20}
base=${CONFIG:-configs/pretrain_synthetic.yaml}
ngpu=$(nvidia-smi -L | wc -l)
work=runs/scaling/$(basename "$out")
# NVLink multicast stays off: on shared hosts it can take the GPUs out of service (the launcher passes env on).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
rm -rf "$work" && mkdir -p "$out" "$work"
: > "$out/train_tail.log"

# The run config, eager (train.compile is not supported with ZeRO-3; eager everywhere keeps the stages
# comparable) and with a log record every $every steps (the steady state is every record but the first).
cfg=$work/run_scaling.yaml
python3 - "$base" "$cfg" "$every" "${BASE_CKPT:-}" <<'EOF' || exit 1
import sys
import yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg["train"].update(compile=False, log_every=int(sys.argv[3]))
if sys.argv[4]:
    cfg["distill"]["base_checkpoint"] = sys.argv[4]
yaml.safe_dump(cfg, open(sys.argv[2], "w"), sort_keys=False)
EOF

port=29500
train() {  # train NAME GPUS ZERO STEPS [ARGS...]: one run in $work/NAME; its log.jsonl copied to $out/NAME.jsonl
  local name=$1 n=$2 zero=$3 total=$4; shift 4
  port=$((port + 1))  # a fresh rendezvous port per run: the previous run's may still be in TIME_WAIT
  echo "== $name: $n GPU(s), ZeRO-$zero, to step $total $*"
  # the machine's bare `deepspeed` belongs to another Python: launch through this one's module
  python3 -m deepspeed.launcher.runner --num_gpus "$n" --master_port "$port" tools/train.py --config "$cfg" \
    --steps "$total" --output "$work/$name" --deepspeed-config "ds_configs/zero$zero.json" "$@" \
    > "$work/$name.log" 2>&1
  local rc=$?
  { echo "== $name (exit $rc)"; tail -n 25 "$work/$name.log"; } >> "$out/train_tail.log"
  tr '\r' '\n' < "$work/$name.log" | grep -E "warning: resuming|error|step $total/$total |done: " | tail -n 3
  cp "$work/$name/log.jsonl" "$out/$name.jsonl" 2>/dev/null
  return $rc
}

counts=(1)
[ "$ngpu" -gt 1 ] && counts+=("$ngpu")  # a 1-GPU machine gets the 1-GPU rows only
logs=()
for zero in 2 3; do
  for n in "${counts[@]}"; do
    train "z${zero}_${n}gpu" "$n" "$zero" "$steps"
    logs+=("z${zero}_${n}gpu=$out/z${zero}_${n}gpu.jsonl")
  done
done

resume_args=()
if [ "$resume_steps" -gt 0 ] && [ "$ngpu" -gt 1 ] && [ -f "$work/z2_${ngpu}gpu/ckpt/latest" ]; then
  # Continue the all-GPU ZeRO-2 run (it saved at its last step) on 1 GPU: a copy, so its own log stays as it was.
  name=resume_${ngpu}to1
  cp -r "$work/z2_${ngpu}gpu" "$work/$name"
  train "$name" 1 2 $((steps + resume_steps)) --resume
  resume_args=(--resume "$out/$name.jsonl")
fi

device="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1) x $ngpu"
python3 -m flexivid.training.scaling_report --output "$out/scaling.md" --device "$device" "${logs[@]}" "${resume_args[@]}"
