#!/usr/bin/env bash
# The main job, end to end, on the embedded default corpus (works offline):
# install -> train (a few minutes on 2 CPU cores) -> export (SavedModel + LiteRT) -> serve ->
# REST :predict -> the same prompt through the LiteRT runner -> stop.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}

echo "== install (into $VENV)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e .

echo "== train: an LSTM language model on the English help text shipped with CPython"
RUN=runs/quickstart
"$VENV/bin/nwp-train" --corpus default --output "$RUN" --embedding-dim 128 --units 256 \
    --num-layers 1 --max-vocab 6000 --epochs 4 --batch-size 32 --bptt 35 \
    --learning-rate 3e-3 --dropout 0.1 --time-budget-minutes 4

echo "== export to saved_models/nwp/<version>/: SavedModel + LiteRT bundle (model.tflite)"
EXPORTED=$("$VENV/bin/nwp-export" --run "$RUN" --model_base_path saved_models --model_name nwp \
    --litert | tee /dev/stderr | sed -n 's/^exported \([^ ]*\).*/\1/p')

PORT=${PORT:-$("$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
echo "== serve on http://127.0.0.1:$PORT (TF Serving REST API)"
"$VENV/bin/nwp-serve" --port=0 --rest_api_port="$PORT" --model_name=nwp --model_base_path=saved_models/nwp &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

echo "== POST /v1/models/nwp:predict: top-5 next words"
"$VENV/bin/nwp-client" --rest_api_port "$PORT" --model_name nwp --wait 120 \
    "the value of the" "a function" "if the" "this is"

echo "== the same version on the phone road: LiteRT runner (ai_edge_litert + NumPy, no TensorFlow)"
"$VENV/bin/nwp-litert" "$EXPORTED" "the value of the"

"$VENV/bin/python" - "$RUN/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"== test perplexity {m['test_perplexity']:.1f} (valid {m['valid_perplexity']:.1f}, "
      f"vocabulary {m['vocab_size']:,}, {m['epochs_run']} epochs, "
      f"{m['train_tokens_per_second']:,.0f} train tokens/s)")
PY
echo "== stopping the server"
