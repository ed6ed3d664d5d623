#!/usr/bin/env bash
# Two training workers on this machine with MultiWorkerMirroredStrategy: each process is one
# worker of the cluster in $TF_CONFIG, gradients are all-reduced between them over gRPC on
# 127.0.0.1, and both end with the same weights. Worker 0 writes OUT, worker 1 OUT.worker1.
# On several machines, run the same nwp-train command on each, with TF_CONFIG listing every
# worker's host:port and its own task index (see README).
#   usage: bash scripts/multiworker_localhost.sh [OUT] [extra nwp-train flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-runs/multiworker}
shift || true
read -r P0 P1 < <("$PYTHON" -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))')
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
CLUSTER="\"cluster\": {\"worker\": [\"127.0.0.1:$P0\", \"127.0.0.1:$P1\"]}"
ARGS=(--strategy multi-worker --no-carry-state --corpus default --epochs 2
      --max-train-tokens 20000 --units 64 --embedding-dim 64 --num-layers 1
      --batch-size 32 --bptt 20 --fresh "$@")
TF_CONFIG="{$CLUSTER, \"task\": {\"type\": \"worker\", \"index\": 1}}" \
    "$PYTHON" -m training.cli "${ARGS[@]}" --output "$OUT.worker1" > "$OUT.worker1.log" 2>&1 &
WORKER1=$!
trap 'kill "$WORKER1" 2>/dev/null || true' EXIT
TF_CONFIG="{$CLUSTER, \"task\": {\"type\": \"worker\", \"index\": 0}}" \
    "$PYTHON" -m training.cli "${ARGS[@]}" --output "$OUT"
wait "$WORKER1"
echo "worker 1 finished too: $OUT.worker1 (log $OUT.worker1.log)"
