#!/usr/bin/env bash
# Runs one stage of flexivid's GPU work on a lent GPU machine, writing what comes back under $OUT.
#   train  : GPU parity checks, pretrain + distill the shipped model (DeepSpeed, NGPU GPUs), release export (bf16)
#   bench  : compute-quality frontier of a model (CKPT), then the kernel table (KERNEL_ARGS)
#   multi  : DeepSpeed ZeRO-2 / ZeRO-3 scaling on 1 vs N GPUs (pretrain and distill), a checkpoint resumed on
#            a different N, data-parallel generation
# Needs (carried, git-ignored): .whl/ (deepspeed + hjson/pydantic wheels), runs/text_cache/ (MiniLM embeddings),
# and for bench .gpu/cache/ (I3D safetensors). Usage: bash tools/gpu_session.sh STAGE
# Transfer limit (64 MiB a call, working tree included): the I3D cache (49 MiB) cannot travel with the committed
# checkpoint (35 MiB). Run bench right after train on the still-warm machine (runs/release/ stays there), with
# checkpoints/flexivid-small moved out of the working tree for that call and only .gpu carried.
set -uo pipefail
stage=${1:?stage: train | bench | multi}
OUT=${OUT:-runs/gpu_out}
mkdir -p "$OUT"
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
    timeout "${FRONTIER_S:-540}" python3 tools/benchmark.py --checkpoint "$ckpt" --out runs/bench/frontier \
      --text-cache runs/text_cache/minilm_synthetic.safetensors ${BENCH_ARGS:-} 2>&1 | tail -n 40
    [ -n "${KERNEL_ARGS:-}" ] && python3 tools/benchmark.py --kernels --out runs/bench/kernels $KERNEL_ARGS 2>&1 | tail -n 30
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
    # data-parallel generation: the same 64 held-out prompts (30 steps, batch 16) on 1 GPU and on every GPU
    python3 -c "from flexivid.config import DataConfig; from flexivid.data.synthetic import SyntheticVideoDataset, \
caption_for; ds = SyntheticVideoDataset(DataConfig(split='test', num_clips=64)); \
print('\n'.join(caption_for(ds.attrs(i)) for i in range(64)))" > runs/multi/dp_prompts.txt
    for n in 1 $(nvidia-smi -L | wc -l); do
      t0=$SECONDS
      python3 -m torch.distributed.run --nproc_per_node "$n" tools/generate_video.py --checkpoint "$base" --quiet \
        --prompts-file runs/multi/dp_prompts.txt --batch-size 16 --output "runs/dp${n}/clip.gif" \
        --text-cache runs/text_cache/minilm_synthetic.safetensors > "runs/multi/dp_${n}gpu.log" 2>&1
      { echo "data-parallel generation on $n GPU(s): $((SECONDS - t0)) s end to end (start-up and loading included)"
        grep "wall-clock" "runs/multi/dp_${n}gpu.log"; } | tee -a runs/multi/dp_generation.txt
    done
    [ "${GPU_CHECK:-1}" = 1 ] && python3 tools/gpu_check.py --out runs/multi/gpu_check.json 2>&1 | tail -n 12
    [ -n "${KERNEL_ARGS:-}" ] && python3 tools/benchmark.py --kernels --out runs/multi/kernels $KERNEL_ARGS 2>&1 | tail -n 30
    pack runs/multi multi
    ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
ls -la "$OUT"
