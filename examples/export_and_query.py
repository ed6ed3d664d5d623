"""Export a trained run and ask it for next words: the SavedModel in process, then LiteRT.

    python examples/export_and_query.py [--run runs/my_text] [--model_base_path saved_models]
        [--prompt "the value of the"] [--tiny]

If the run folder does not exist, ``examples/train_on_your_text.py`` makes it first
(``--tiny``: a few seconds of training). The export writes ``<base>/nwp/<version>/``: a
SavedModel (signatures ``serving_default``, ``generate``, ``score``) with a float32 LiteRT
bundle (``model.tflite``) beside it. The SavedModel is called the way TF Serving calls it
(``tf.saved_model.load(...).signatures``); the LiteRT runner reads ``model.tflite`` with
``ai_edge_litert`` and NumPy only.
"""
import argparse, os, pathlib, subprocess, sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--run", default="runs/my_text", help="a run folder (train_on_your_text.py)")
p.add_argument("--model_base_path", default="saved_models")
p.add_argument("--prompt", default="the value of the")
p.add_argument("--tiny", action="store_true", help="train a tiny run if --run is missing")
args = p.parse_args()
if not os.path.exists(os.path.join(args.run, "model.keras")):
    subprocess.run([sys.executable, str(ROOT / "examples" / "train_on_your_text.py"),
                    "--output", args.run] + (["--tiny"] if args.tiny else []), check=True)

import tensorflow as tf  # noqa: E402
from serving import LiteRTPredictor, export_saved_model  # noqa: E402
from zoo import NextWordPredictor  # noqa: E402

predictor = NextWordPredictor.load(args.run)
version_dir = export_saved_model(predictor, args.model_base_path, "nwp",
                                 litert={"quantization": "float32"})
print(f"exported {version_dir}")

signatures = tf.saved_model.load(version_dir).signatures
out = signatures["serving_default"](text=tf.constant([args.prompt]))
saved = [(w.decode(), float(q)) for w, q in zip(out["words"][0].numpy(),
                                                out["probabilities"][0].numpy())]
print("SavedModel:", ", ".join(f"{w} {q:.4f}" for w, q in saved))
gen = signatures["generate"](
    text=tf.constant([args.prompt]), max_new_tokens=tf.constant([8]),
    temperature=tf.constant([0.0]), top_k=tf.constant([0]), top_p=tf.constant([1.0]),
    seed=tf.constant([1], tf.int64))  # temperature 0: greedy
print("generate (greedy):", gen["continuation"][0].numpy().decode())

lite = LiteRTPredictor.load(version_dir).suggest(args.prompt, k=len(saved))
print("LiteRT:    ", ", ".join(f"{w} {q:.4f}" for w, q in lite))
print(f"largest probability difference: {max(abs(a[1] - b[1]) for a, b in zip(saved, lite)):.2e}")
