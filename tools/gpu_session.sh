#!/usr/bin/env bash
# Runs one stage of flexivid's GPU work on a lent GPU machine, writing what comes back under $OUT.
#   train  : GPU parity checks, pretrain + distill the shipped model (DeepSpeed), release export (bf16, split)
#   bench  : kernel throughput table + compute-quality frontier of the trained model
#   multi  : DeepSpeed ZeRO-2 / ZeRO-3 scaling on 1 vs N GPUs, and a checkpoint resumed on a different N
# Needs (carried, git-ignored): .whl/ (deepspeed + hjson/pydantic wheels), runs/text_cache/ (MiniLM embeddings),
# and for bench .gpu/cache/ (I3D safetensors). Usage: bash tools/gpu_session.sh STAGE
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
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0 FLEXIVID_CACHE=$PWD/.gpu/cache TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/device.txt"

pack() {  # pack DIR NAME: tar.gz of DIR split into 15 MiB parts under $OUT (files come back at <= 16 MiB each)
  tar czf "/tmp/$2.tgz" -C "$(dirname "$1")" "$(basename "$1")" && split -b 15m "/tmp/$2.tgz" "$OUT/$2.tgz.part-"
}

case "$stage" in
  train)
    python3 tools/gpu_check.py --out "$OUT/gpu_check.json" 2>&1 | tail -n 12
    # the machine's bare `deepspeed` belongs to another Python: launch through this one's module
    python3 -m deepspeed.launcher.runner --num_gpus 1 tools/train.py --config configs/pretrain_synthetic.yaml \
      ${PRETRAIN_ARGS:-} > runs/pretrain.log 2>&1; tail -n 12 runs/pretrain.log
    python3 -m deepspeed.launcher.runner --num_gpus 1 tools/train.py --config configs/distill_synthetic.yaml \
      ${DISTILL_ARGS:-} > runs/distill.log 2>&1; tail -n 12 runs/distill.log
    python3 tools/export_release.py --src runs/distill_synthetic/export --dst runs/release/flexivid-small
    mkdir -p runs/logs && cp runs/pretrain.log runs/distill.log runs/pretrain_synthetic/log.jsonl runs/logs/ 2>/dev/null
    cp runs/distill_synthetic/log.jsonl runs/logs/distill_log.jsonl 2>/dev/null
    pack runs/logs logs; pack runs/release/flexivid-small model
    ;;
  bench)
    ckpt=${CKPT:-runs/release/flexivid-small}
    python3 tools/benchmark.py --kernels --out runs/bench/kernels ${KERNEL_ARGS:-} 2>&1 | tail -n 30
    python3 tools/benchmark.py --checkpoint "$ckpt" --out runs/bench/frontier \
      --text-cache runs/text_cache/minilm_synthetic.safetensors ${BENCH_ARGS:-} 2>&1 | tail -n 40
    pack runs/bench bench
    ;;
  multi)
    bash tools/multigpu_scaling.sh "$OUT" 2>&1 | tail -n 60
    ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
ls -la "$OUT"
