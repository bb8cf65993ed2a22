#!/usr/bin/env bash
# Data-parallel training through a ZeroMQ parameter server on several machines, without MPI.
#
#   HOSTS="node1 node2" launchers/ps_cluster.sh 4 examples/ddp_digits.py --epochs 5   # 2 machines x 4 ranks
#   HOSTS="node1 node2" SERVERS=2 launchers/ps_cluster.sh 4 examples/ddp_digits.py     # ... and 2 servers
#   launchers/ps_cluster.sh 4 examples/ddp_digits.py                                   # this machine only
#
# The first host is node 0: its launcher runs the parameter server on PORT (default 29600)
# on every interface, so a shared secret is required. It is read from SECRET_FILE (default
# ~/.distrain/ps_secret, created with mode 600 on first use), and every host must see the
# same file (a shared home directory, or copy it). Each host runs, over ssh:
#   python -m distrain.launch -n RANKS --backend ps --nnodes N --node-rank K --server tcp://NODE0:PORT SCRIPT ARGS
# Every host needs the same Python environment and the script at the same path. If a rank
# fails, its host's launcher stops that host's ranks; the others' collectives then fail
# within the timeout naming the ranks that never arrived.
#
# SERVERS=S (default 1) runs S parameter servers, all on the first host, at PORT, PORT+1, ...
# PORT+S-1 (open them all): allreduces larger than a partition (PARTITION_MB, default 4) are
# split among them, so push/pull bandwidth grows with S. Every host's launcher gets the same
# --servers and computes the same list of addresses; a server that dies fails the job naming it.
#
# PS_MODE=async STALENESS=K (default 0) trains asynchronously: the servers run the optimizer and
# a rank may run K steps ahead of the slowest (inf: unbounded); a rank that fails is left out
# and the others go on (MAX_RESTARTS=M restarts it up to M times, joining at the current step).
# PS_CHECKPOINT_DIR=DIR (on the first host) keeps the servers' state there, so that a server
# restarted there, or the whole job started again with the same DIR, resumes from it.
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 RANKS_PER_HOST SCRIPT [ARGS...]   (set HOSTS=\"host1 host2 ...\" for several machines)" >&2
    exit 2
fi
ranks=$1
shift

python=${PYTHON:-python}
port=${PORT:-29600}
server_options=(--servers "${SERVERS:-1}")
if [ -n "${PARTITION_MB:-}" ]; then
    server_options+=(--partition-mb "$PARTITION_MB")
fi
if [ "${PS_MODE:-sync}" = async ]; then
    server_options+=(--ps-mode async --staleness "${STALENESS:-0}" --max-restarts "${MAX_RESTARTS:-0}")
    if [ -n "${PS_CHECKPOINT_DIR:-}" ]; then
        server_options+=(--ps-checkpoint-dir "$PS_CHECKPOINT_DIR")
    fi
fi
read -r -a hosts <<< "${HOSTS:-localhost}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one BLAS thread per rank: ranks already fill the cores

if [ "${#hosts[@]}" -eq 1 ] && [ "${hosts[0]}" = localhost ]; then
    exec "$python" -m distrain.launch -n "$ranks" --backend ps "${server_options[@]}" "$@"
fi

secret_file=${SECRET_FILE:-$HOME/.distrain/ps_secret}
if [ ! -f "$secret_file" ]; then
    mkdir -p "$(dirname "$secret_file")"
    (umask 077 && "$python" -c 'import secrets; print(secrets.token_hex(32))' > "$secret_file")
fi

server="tcp://${hosts[0]}:$port"
pids=()
for node_rank in "${!hosts[@]}"; do
    host=${hosts[$node_rank]}
    launch=$(printf '%q ' env "OMP_NUM_THREADS=$OMP_NUM_THREADS" "$python" -m distrain.launch \
        -n "$ranks" --backend ps "${server_options[@]}" --nnodes "${#hosts[@]}" --node-rank "$node_rank" \
        --server "$server" --secret-file "$secret_file" "$@")
    ssh "$host" "cd $(printf '%q' "$PWD") && $launch" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
done
exit "$status"
