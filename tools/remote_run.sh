#!/usr/bin/env bash
# Run one command from a copy of this checkout on a GPU machine without network access:
#
#   bash tools/remote_run.sh python -m pytest -m gpu tests
#   bash tools/remote_run.sh torchrun --nproc_per_node 2 tools/train.py --config configs/pretrain_synthetic.yaml
#
# Packages the machine lacks (e.g. deepspeed and its pure-Python dependencies) can travel as wheels in $WHEELS
# (default .whl/): they are installed without network into a temporary folder placed first on PYTHONPATH, so the
# machine's own packages are left alone. NVLink multicast is turned off for NCCL and torch: on shared hosts it can
# take the GPUs out of service.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: bash tools/remote_run.sh COMMAND [ARGS...]" >&2; exit 2; }
wheels=${WHEELS:-.whl}
site=$(mktemp -d)
if compgen -G "$wheels/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 TOKENIZERS_PARALLELISM=false
exec "$@"
