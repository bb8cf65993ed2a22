#!/usr/bin/env bash
# One rank per GPU on this machine.
#
#   launchers/single_node_multi_gpu.sh examples/ddp_digits.py --epochs 5
#
# Counts the GPUs with nvidia-smi (or takes NUM_GPUS), starts that many ranks, and gives
# rank r the GPU r: LOCAL_RANK is exported by `python -m distrain.launch`, and a script
# selects its device with `distrain.device(f"cuda:{os.environ['LOCAL_RANK']}")`.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 SCRIPT [ARGS...]   (NUM_GPUS=n to override the GPU count)" >&2
    exit 2
fi
if [ -z "${NUM_GPUS:-}" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "$0: nvidia-smi is not on PATH, so the GPUs cannot be counted: install the NVIDIA driver" \
         "(it brings nvidia-smi), set NUM_GPUS=n, or use launchers/mpirun.sh for CPU ranks" >&2
    exit 1
fi
if [ -n "${NUM_GPUS:-}" ]; then
    gpus=$NUM_GPUS
elif ! gpus=$(nvidia-smi --list-gpus 2>&1); then
    echo "$0: nvidia-smi failed, so the GPUs cannot be counted: ${gpus}" >&2
    exit 1
else
    gpus=$(printf '%s\n' "$gpus" | grep -c '^GPU ' || true)
fi
case "$gpus" in
    ''|*[!0-9]*) echo "$0: NUM_GPUS must be a whole number, got '$gpus'" >&2; exit 2 ;;
esac
if [ "$gpus" -lt 1 ]; then
    echo "$0: no GPU found (nvidia-smi lists none); set NUM_GPUS or use launchers/mpirun.sh for CPU ranks" >&2
    exit 1
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "${PYTHON:-python}" -m distrain.launch -n "$gpus" "$@"
