#!/usr/bin/env bash
# Data-parallel training with MPI, on one machine or several.
#
#   launchers/mpirun.sh 4 examples/ddp_digits.py --epochs 5              # 4 ranks on this machine
#   HOSTFILE=hosts.txt launchers/mpirun.sh 8 examples/ddp_digits.py      # 8 ranks across the hosts listed
#
# hosts.txt lists one host per line with its number of ranks (MPICH: "node1:4"; Open MPI:
# "node1 slots=4"); every host needs the same Python environment and the script at the same path.
# Each rank runs `python -m distrain.launch SCRIPT ARGS...`, which reads its rank from MPI's
# environment, exports RANK/WORLD_SIZE/LOCAL_RANK, and aborts the whole job if a rank fails.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 NUM_RANKS SCRIPT [ARGS...]   (set HOSTFILE=path for several machines)" >&2
    exit 2
fi
ranks=$1
shift

python=${PYTHON:-python}
mpiexec=${MPIEXEC:-mpiexec}
hostfile_args=()
if [ -n "${HOSTFILE:-}" ]; then
    hostfile_args=(-f "$HOSTFILE")   # MPICH's flag; Open MPI's mpirun takes --hostfile
fi
# One BLAS thread per rank unless told otherwise: ranks already fill the cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

exec "$mpiexec" -n "$ranks" "${hostfile_args[@]}" "$python" -m distrain.launch "$@"
