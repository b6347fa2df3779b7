#!/usr/bin/env bash
# Runs one stage of flexivid's GPU work on a lent GPU machine, writing what comes back under $OUT.
#   train  : GPU parity checks, pretrain + distill the shipped model (DeepSpeed, NGPU GPUs), release export (bf16)
#   bench  : compute-quality frontier of a model (CKPT), then the kernel table (KERNEL_ARGS)
#   multi  : DeepSpeed ZeRO-2 / ZeRO-3 scaling on 1 vs N GPUs (pretrain and distill), a checkpoint resumed on
#            a different N, data-parallel generation
#   release: distill the committed base again (DISTILL_STEPS, all GPUs), export, then side by side: GPU 0 the
#            frontier of the new model, GPU 1 the kernel table (KERNEL_ARGS), gpu_check and the distillation's last
#            checkpoint resumed on 1 GPU; then data-parallel generation
#   start STAGE / wait: run STAGE detached (setsid), so it outlives the 10-minute call; each `wait` call follows
#            it for WAIT_S seconds (default 570) and, once it has ended, brings back its $OUT
# Needs (carried, git-ignored): .whl/ (deepspeed + hjson/pydantic wheels), runs/text_cache/ (MiniLM embeddings),
# and for bench .gpu/cache/ (I3D safetensors). Usage: bash tools/gpu_session.sh STAGE
# Transfer limit (64 MiB a call, working tree included): the I3D cache (49 MiB) cannot travel with the committed
# checkpoint (35 MiB). Run bench right after train on the still-warm machine (runs/release/ stays there), with
# checkpoints/flexivid-small moved out of the working tree for that call and only .gpu carried.
set -uo pipefail
stage=${1:?stage: train | bench | multi | release | start STAGE | wait}
OUT=${OUT:-runs/gpu_out}
mkdir -p "$OUT"
bg=/tmp/flexivid_bg  # the detached stage's log, exit status and $OUT (outside the tree, which each call re-copies)
case "$stage" in
  start)
    rm -rf $bg && mkdir -p $bg/out
    OUT=$bg/out setsid nohup bash -c "bash tools/gpu_session.sh ${2:?start STAGE}; echo \$? > $bg/rc" \
      > $bg/log 2>&1 < /dev/null &
    sleep "${WAIT_S:-60}"; tail -n 40 $bg/log; exit 0 ;;
  wait)
    t0=$SECONDS
    while [ ! -f $bg/rc ] && [ $((SECONDS - t0)) -lt "${WAIT_S:-570}" ]; do sleep 5; done
    cp $bg/log "$OUT/bg.log"; tail -n 60 $bg/log
    if [ -f $bg/rc ]; then echo "detached stage ended: exit $(cat $bg/rc)"; cp $bg/out/* "$OUT/"; else echo "still running"; fi
    ls -la "$OUT"; exit 0 ;;
esac
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
# NVLink multicast stays off: on shared hosts it can take the GPUs out of service (KINDS.md).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 FLEXIVID_CACHE=$PWD/.gpu/cache TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/device.txt"

pack() {  # pack DIR NAME: tar.gz of DIR split into 15 MiB parts under $OUT (files come back at <= 16 MiB each)
  tar czf "/tmp/$2.tgz" -C "$(dirname "$1")" "$(basename "$1")" && split -b 15m "/tmp/$2.tgz" "$OUT/$2.tgz.part-"
}

dp_generation() {  # dp_generation CKPT DIR: 64 held-out prompts (30 steps, batch 16) on 1 GPU, then on every GPU;
  # DIR/dp_prompts.txt, DIR/dp_<n>gpu.log and the wall-clock lines in DIR/dp_generation.txt
  local ngpu n t0; ngpu=$(nvidia-smi -L | wc -l)
  python3 -c "from flexivid.config import DataConfig; from flexivid.data.synthetic import SyntheticVideoDataset, \
caption_for; ds = SyntheticVideoDataset(DataConfig(split='test', num_clips=64)); \
print('\n'.join(caption_for(ds.attrs(i)) for i in range(64)))" > "$2/dp_prompts.txt"
  for n in 1 $([ "$ngpu" -gt 1 ] && echo "$ngpu"); do
    t0=$SECONDS
    python3 -m torch.distributed.run --nproc_per_node "$n" tools/generate_video.py --checkpoint "$1" --quiet \
      --prompts-file "$2/dp_prompts.txt" --batch-size 16 --output "runs/dp${n}/clip.gif" \
      --text-cache runs/text_cache/minilm_synthetic.safetensors > "$2/dp_${n}gpu.log" 2>&1
    { echo "data-parallel generation on $n GPU(s): $((SECONDS - t0)) s end to end (start-up and loading included)"
      grep "wall-clock" "$2/dp_${n}gpu.log"; } | tee -a "$2/dp_generation.txt"
  done
}

case "$stage" in
  train)
    # NGPU GPUs (default 1). PRETRAIN_CONFIG (default configs/pretrain_synthetic.yaml); INIT_DIR: an exported
    # model placed at runs/pretrain_synthetic/export first, the init_from of configs/pretrain_synthetic_stage2.yaml.
    # The distillation gets the steps that fit before DEADLINE_S seconds (default 560) at DISTILL_RATE samples/s per GPU.
    ngpu=${NGPU:-1}
    pcfg=${PRETRAIN_CONFIG:-configs/pretrain_synthetic.yaml}
    [ "${GPU_CHECK:-1}" = 1 ] && python3 tools/gpu_check.py --out "$OUT/gpu_check.json" 2>&1 | tail -n 12
    if [ -n "${INIT_DIR:-}" ]; then
      mkdir -p runs/pretrain_synthetic && rm -rf runs/pretrain_synthetic/export
      cp -r "$INIT_DIR" runs/pretrain_synthetic/export || exit 1
    fi
    # the machine's bare `deepspeed` belongs to another Python: launch through this one's module
    # stopped (if need be) DEADLINE_S - 170 s in, leaving the distillation its time; the export of the last
    # checkpoint (train.ckpt_every) is then the base
    timeout $(( ${DEADLINE_S:-560} - 170 - SECONDS )) python3 -m deepspeed.launcher.runner --num_gpus "$ngpu" \
      tools/train.py --config "$pcfg" ${PRETRAIN_ARGS:-} > runs/pretrain.log 2>&1; tail -n 12 runs/pretrain.log
    dsteps=$(python3 -c "import yaml; print(yaml.safe_load(open('configs/distill_synthetic.yaml'))['train']['steps'])")
    fit=$(( (${DEADLINE_S:-560} - SECONDS - 45) * ${DISTILL_RATE:-150} / 32 ))  # 32 clips per GPU per step
    [ "$fit" -lt "$dsteps" ] && { echo "distill: $fit steps fit before the deadline (config: $dsteps)"; dsteps=$fit; }
    python3 -m deepspeed.launcher.runner --num_gpus "$ngpu" tools/train.py --config configs/distill_synthetic.yaml \
      --steps "$dsteps" ${DISTILL_ARGS:-} > runs/distill.log 2>&1; tail -n 12 runs/distill.log
    python3 tools/export_release.py --src runs/distill_synthetic/export --dst runs/release/flexivid-small
    mkdir -p runs/logs && cp runs/pretrain.log runs/distill.log runs/logs/ 2>/dev/null
    pdir=$(python3 -c "import yaml; print(yaml.safe_load(open('$pcfg'))['train']['out_dir'])")
    cp "$pdir/log.jsonl" runs/logs/pretrain_log.jsonl 2>/dev/null
    cp runs/distill_synthetic/log.jsonl runs/logs/distill_log.jsonl 2>/dev/null
    pack runs/logs logs; pack runs/release/flexivid-small model
    ;;
  bench)
    # The frontier first (it rewrites its files after each timing pass, so a stop at FRONTIER_S keeps what ran), then
    # the kernel table if KERNEL_ARGS is set.
    ckpt=${CKPT:-runs/release/flexivid-small}
    timeout "${FRONTIER_S:-540}" python3 tools/benchmark.py --checkpoint "$ckpt" --output runs/bench/frontier \
      --text-cache runs/text_cache/minilm_synthetic.safetensors ${BENCH_ARGS:-} 2>&1 | tail -n 40
    [ -n "${KERNEL_ARGS:-}" ] && python3 tools/benchmark.py --kernels --output runs/bench/kernels $KERNEL_ARGS 2>&1 | tail -n 30
    pack runs/bench bench
    ;;
  multi)
    # pretrain and distill configs, data-parallel generation, then the GPU parity check and (KERNEL_ARGS) kernels.
    # The distill base is the released model of a `train` stage on this machine, or the committed one. Outputs
    # packed into one archive.
    base=runs/release/flexivid-small; [ -f $base/model.safetensors ] || base=checkpoints/flexivid-small
    STEPS=${STEPS:-40} bash tools/multigpu_scaling.sh runs/multi/pretrain 2>&1 | tail -n 30
    CONFIG=configs/distill_synthetic.yaml BASE_CKPT=$base RESUME_STEPS=0 STEPS=${STEPS:-40} \
      bash tools/multigpu_scaling.sh runs/multi/distill 2>&1 | tail -n 30
    dp_generation "$base" runs/multi
    [ "${GPU_CHECK:-1}" = 1 ] && python3 tools/gpu_check.py --out runs/multi/gpu_check.json 2>&1 | tail -n 12
    [ -n "${KERNEL_ARGS:-}" ] && python3 tools/benchmark.py --kernels --output runs/multi/kernels $KERNEL_ARGS 2>&1 | tail -n 30
    pack runs/multi multi
    ;;
  release)
    # BASE: the exported base to distill (default: the committed release; load_model reads its base weights only).
    # KERNEL_ARGS / BENCH_ARGS as for bench. The frontier waits for the I3D cache (.gpu/cache), which a later call
    # may bring: it cannot travel with the committed checkpoint (transfer limit).
    ngpu=$(nvidia-smi -L | wc -l); side=$(( ngpu > 1 ? 1 : 0 ))
    w=runs/release_stage && rm -rf $w && mkdir -p $w/logs $w/bench
    cp -r "${BASE:-checkpoints/flexivid-small}" $w/base || exit 1
    python3 -c "import sys, yaml; cfg = yaml.safe_load(open('configs/distill_synthetic.yaml')); \
cfg['distill']['base_checkpoint'] = sys.argv[1] + '/base'; yaml.safe_dump(cfg, open(sys.argv[1] + '/distill.yaml', 'w'), \
sort_keys=False)" $w || exit 1
    python3 -m deepspeed.launcher.runner --num_gpus "$ngpu" --master_port 29601 tools/train.py \
      --config $w/distill.yaml --steps "${DISTILL_STEPS:-2000}" > $w/logs/distill.log 2>&1
    tail -n 12 $w/logs/distill.log; cp runs/distill_synthetic/log.jsonl $w/logs/distill_log.jsonl
    python3 tools/export_release.py --src runs/distill_synthetic/export --dst $w/flexivid-small || exit 1
    frontier() {
      while ! ls .gpu/cache/i3d_*.safetensors >/dev/null 2>&1; do sleep 5; done
      CUDA_VISIBLE_DEVICES=0 timeout "${FRONTIER_S:-900}" python3 tools/benchmark.py --checkpoint $w/flexivid-small \
        --output $w/bench/frontier --text-cache runs/text_cache/minilm_synthetic.safetensors ${BENCH_ARGS:-} \
        > $w/logs/frontier.log 2>&1
    }
    side_jobs() {
      export CUDA_VISIBLE_DEVICES=$side
      [ -n "${KERNEL_ARGS:-}" ] && python3 tools/benchmark.py --kernels --output $w/bench/kernels $KERNEL_ARGS \
        > $w/logs/kernels.log 2>&1
      python3 tools/gpu_check.py --out $w/bench/gpu_check.json > $w/logs/gpu_check.log 2>&1
      # the distillation's last (all-GPU) checkpoint, continued on 1 GPU (the per-rank RNG fix)
      rm -rf runs/resume_to1 && cp -r runs/distill_synthetic runs/resume_to1
      unset CUDA_VISIBLE_DEVICES  # the launcher sets it from --include
      python3 -m deepspeed.launcher.runner --include "localhost:$side" --master_port 29602 tools/train.py \
        --config $w/distill.yaml --out-dir runs/resume_to1 --steps $(( ${DISTILL_STEPS:-2000} + 20 )) --resume \
        > $w/logs/resume_to1.log 2>&1; cp runs/resume_to1/log.jsonl $w/logs/resume_to1_log.jsonl
    }
    if [ "$side" = 1 ]; then frontier & side_jobs; wait; else frontier; side_jobs; fi
    tail -n 25 $w/logs/frontier.log $w/logs/kernels.log $w/logs/gpu_check.log $w/logs/resume_to1.log
    [ "$ngpu" -gt 1 ] && dp_generation $w/flexivid-small $w/logs
    rm -rf $w/base; pack $w release
    ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
ls -la "$OUT"
