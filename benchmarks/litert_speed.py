"""LiteRT bundles of a trained run: size, speed per step, and what quantization costs.

For every quantization (float32, float16, dynamic-int8, full int8) the run's one-step model
is converted (``serving.litert_export.convert_step``), then:

* **size** of ``model.tflite`` in bytes;
* **ms per step** at batch 1 with 1 interpreter thread (``ai_edge_litert``, XNNPACK),
  p50 and p95 over timed steps along the test text with the state fed back; beside them the
  same one-step signature as a SavedModel called in TensorFlow (``tf.saved_model.load``),
  the "SavedModel step". Timed rounds alternate between all runtimes, so the machine's
  noise hits each alike;
* **test perplexity, top-1 / top-3 accuracy and keystroke savings** of the whole test split
  read as one stream from a zero state through the ``.tflite`` (``zoo.keyboard_metrics``),
  and the mean **top-5 overlap** with float32 (the share of float32's top-5 words that the
  quantized file also ranks in its top 5, averaged over positions).

Full int8 is measured even when ``nwp-export`` would refuse it; the table says whether it
would. Usage::

    python benchmarks/litert_speed.py --run runs/ptb-keyboard --data-dir ../data \\
        [--max-tokens N] [--rounds 3] [--steps 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from serving import litert_export  # noqa: E402
from serving.litert_export import QUANTIZATIONS, convert_step  # noqa: E402
from training.cli import write_calibration_text  # noqa: E402
from training.corpora import load_corpus  # noqa: E402
from zoo import NextWordPredictor  # noqa: E402
from zoo.keyboard_metrics import KeyboardMetrics  # noqa: E402


def _softmax(logits):
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


def stream_metrics(content, spec, ids, vectorizer, chunk=512, label=""):
    """Metrics of a ``.tflite`` over the stream ``ids`` (one zero-state stream) and its top-5
    ids per position."""
    runner = Interpreter(model_content=content, num_threads=1).get_signature_runner("step")
    limit = litert_export.max_positions(spec)  # a Transformer starts again at max_length
    special = {0, 1, vectorizer.eos_id, vectorizer.unk_id}
    metrics = KeyboardMetrics(vectorizer.vocabulary, special, k=3)
    top5 = np.zeros((ids.size - 1, 5), np.int32)
    rows, targets = [], []
    last = time.monotonic()
    for t in range(ids.size - 1):
        if t == 0 or (limit is not None and t % limit == 0):
            states = {n: np.zeros(s, d) for n, s, d in spec}
        out = runner(token_ids=np.array([ids[t]], np.int32), **states)
        states = {n: out[n] for n in states}
        rows.append(out["logits"][0])
        targets.append(ids[t + 1])
        if len(rows) == chunk or t == ids.size - 2:
            logits = np.stack(rows).astype(np.float64)
            top5[t + 1 - len(rows):t + 1] = np.argsort(-logits, axis=1)[:, :5]
            metrics.update(_softmax(logits), np.array(targets))
            rows, targets = [], []
        if time.monotonic() - last > 5:
            print(f"  {label}: {t + 1:,}/{ids.size - 1:,} tokens", file=sys.stderr, flush=True)
            last = time.monotonic()
    return metrics.result(), top5


def saved_model_step(model, directory):
    """The one-step signature as a SavedModel, loaded back: a callable on NumPy states."""
    litert_export._step_archive(model, 1, 256, directory)
    return tf.saved_model.load(directory).signatures["step"]


def time_round(kind, runner, spec, ids, steps, start):
    """``steps`` timed steps (ms each) from a zero state over ``ids[start:]``."""
    limit = litert_export.max_positions(spec)
    times = []
    for t in range(start, start + steps):
        if t == start or (limit is not None and (t - start) % limit == 0):
            states = {n: np.zeros(s, d) for n, s, d in spec}
        token = ids[t % ids.size]
        if kind == "tf":
            t0 = time.perf_counter()
            out = runner(token_ids=tf.constant([token], tf.int32),
                         **{n: tf.constant(v) for n, v in states.items()})
            states = {n: out[n].numpy() for n in states}
            out["logits"].numpy()
        else:
            t0 = time.perf_counter()
            out = runner(token_ids=np.array([token], np.int32), **states)
            states = {n: out[n] for n in states}
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a run folder written by nwp-train")
    p.add_argument("--corpus", default=None, help="default: the run's (metrics.json)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--max-tokens", type=int, default=None, help="test tokens read (all)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds")
    p.add_argument("--steps", type=int, default=300, help="timed steps per round")
    p.add_argument("--quantizations", default=",".join(QUANTIZATIONS))
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)

    recorded = {}
    if os.path.exists(os.path.join(args.run, "metrics.json")):
        with open(os.path.join(args.run, "metrics.json")) as f:
            recorded = json.load(f)
    predictor = NextWordPredictor.load(args.run)
    model, vectorizer = predictor.model, predictor.vectorizer
    corpus = load_corpus(args.corpus or recorded.get("corpus", "ptb"), args.data_dir,
                         allow_download=False)
    ids = vectorizer.encode_lines(corpus.test)
    if args.max_tokens:
        ids = ids[: args.max_tokens]
    with tempfile.TemporaryDirectory() as tmp:
        calibration = os.path.join(tmp, "calibration.txt")
        write_calibration_text(corpus.train, calibration)
        with open(calibration, encoding="utf-8") as f:
            calib_ids = vectorizer.encode_lines(f.read().splitlines())[:600]
        print(f"{args.run}: {type(model).__name__} {model.count_params():,} parameters; "
              f"test {ids.size:,} tokens; int8 calibration {calib_ids.size // 2} tokens",
              file=sys.stderr, flush=True)
        files, results = {}, {}
        for q in args.quantizations.split(","):
            start = time.monotonic()
            files[q], spec = convert_step(model, q, representative_ids=calib_ids[:300])
            print(f"  converted {q}: {len(files[q]):,} bytes in "
                  f"{time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
        refused = None
        if "int8" in files and "float32" in files:
            ppl_f, ppl_q, overlap = litert_export.compare_quantized(
                files["float32"], files["int8"], spec, calib_ids[300:])
            refused = not ppl_q <= litert_export.INT8_MAX_PERPLEXITY_RATIO * ppl_f
        tf_step = saved_model_step(model, os.path.join(tmp, "step_savedmodel"))
        runners = {q: ("litert", Interpreter(model_content=c, num_threads=1)
                       .get_signature_runner("step")) for q, c in files.items()}
        runners["SavedModel step (TF)"] = ("tf", tf_step)
        times = {name: [] for name in runners}
        for r in range(args.rounds):
            for name, (kind, runner) in runners.items():
                time_round(kind, runner, spec, ids, 20, 0)  # warm up
                times[name] += time_round(kind, runner, spec, ids, args.steps,
                                          r * args.steps)
        for q, content in files.items():
            metrics, top5 = stream_metrics(content, spec, ids, vectorizer, label=q)
            results[q] = {"bytes": len(content), "metrics": metrics, "top5": top5}
    ref_top5 = results.get("float32", {}).get("top5")
    rows = []
    for name, t in times.items():
        row = {"runtime": name, "p50_ms": float(np.percentile(t, 50)),
               "p95_ms": float(np.percentile(t, 95))}
        if name in results:
            res = results[name]
            m = res["metrics"]
            row.update(bytes=res["bytes"], perplexity=m["perplexity"],
                       top1=m["top1_accuracy"], top3=m["top3_accuracy"],
                       ksr_next_word=m["ksr_next_word"], ksr_prefix=m["ksr_prefix"])
            if ref_top5 is not None:
                row["top5_overlap"] = float(np.mean([
                    len(set(a) & set(b)) / 5 for a, b in zip(ref_top5, res["top5"])]))
        rows.append(row)
    tf_p50 = np.percentile(times["SavedModel step (TF)"], 50)
    print(f"\n{args.run} ({type(model).__name__}, {model.count_params():,} parameters, "
          f"{model.count_params() * 4 / 1e6:.2f} MB as float32); {corpus.name} test "
          f"{ids.size - 1:,} next-token predictions; {args.rounds} alternating rounds x {args.steps} steps; "
          f"batch 1, 1 thread; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    if "float32" in results:
        print(f"Keras (training run, batched streams) test perplexity: "
              f"{recorded.get('test_perplexity', float('nan')):.2f}")
    print("\n| runtime | bytes | p50 ms/step | p95 ms/step | speed-up vs SavedModel step "
          "| test ppl | top-1 | top-3 | KSR next word | KSR prefix | top-5 overlap |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        def f(key, fmt):
            return format(row[key], fmt) if row.get(key) is not None else ""
        print(f"| {row['runtime']} | {f('bytes', ',')} | {row['p50_ms']:.3f} | "
              f"{row['p95_ms']:.3f} | {tf_p50 / row['p50_ms']:.1f}x | {f('perplexity', '.2f')} "
              f"| {f('top1', '.2%')} | {f('top3', '.2%')} | {f('ksr_next_word', '.2%')} | "
              f"{f('ksr_prefix', '.2%')} | {f('top5_overlap', '.3f')} |")
    if refused is not None:
        print(f"\nnwp-export would {'refuse' if refused else 'accept'} full int8 for this model "
              f"(held-out calibration perplexity {ppl_q:.2f} vs float32 {ppl_f:.2f}, top-5 "
              f"overlap {overlap:.3f}; limit x{litert_export.INT8_MAX_PERPLEXITY_RATIO}).")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"run": args.run, "rows": rows, "int8_refused": refused}, f, indent=1)


if __name__ == "__main__":
    main()
