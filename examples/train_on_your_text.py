"""Train a next-word LSTM on your own text with ``model.fit``, save it, ask it for words.

    python examples/train_on_your_text.py [my_text.txt] [--epochs 3] [--tiny]

Without a file it trains on the first lines of the help text that ships with CPython
(``pydoc_data.topics``). ``--tiny`` is a budget of a few seconds (for the tests).
The run folder (``--output``) is what ``nwp-export --run`` reads.
"""
import argparse, os, pathlib, sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # run from a checkout
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras, tensorflow as tf  # noqa: E401,E402
from training import window_dataset  # noqa: E402
from zoo import NextWordPredictor, WordVectorizer, get_model  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("text_file", nargs="?", help="a UTF-8 text file; default: CPython's help text")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--output", default="runs/my_text")
p.add_argument("--prompt", default="the value of the")
p.add_argument("--tiny", action="store_true", help="a few seconds of training")
args = p.parse_args()

if args.text_file:
    lines = pathlib.Path(args.text_file).read_text(encoding="utf-8").splitlines()
else:
    from pydoc_data import topics
    lines = "\n".join(topics.topics[k] for k in sorted(topics.topics)).splitlines()[:6000]
lines = [line for line in lines if line.strip()][: 600 if args.tiny else None]
if len(lines) < 10:
    p.error(f"{args.text_file} has {len(lines)} non-empty lines; give it at least 10")
cut = max(1, int(len(lines) * 0.9))  # the last 10% of the lines are for validation
vectorizer = WordVectorizer.fit(lines[:cut], standardize="lower_punct", max_tokens=5000)
train_ids, valid_ids = (vectorizer.encode_lines(part) for part in (lines[:cut], lines[cut:]))
train = window_dataset(train_ids, bptt=20, batch_size=16, shuffle=True, seed=0)
valid = window_dataset(valid_ids, bptt=20, batch_size=64)

keras.utils.set_random_seed(0)
size = dict(embedding_dim=32, units=64) if args.tiny else dict(embedding_dim=128, units=256)
model = get_model("lstm", vectorizer.vocab_size, num_layers=1, **size)
model.compile(optimizer=keras.optimizers.Adam(1e-2 if args.tiny else 3e-3))
model.fit(train, epochs=args.epochs, validation_data=valid, verbose=2, shuffle=False)
result = model.evaluate(valid, return_dict=True, verbose=0)  # loss: nats summed over a window
print(f"vocabulary {vectorizer.vocab_size} ids; validation perplexity "
      f"{result['perplexity']:.4f} (exp of the mean loss per token)")

predictor = NextWordPredictor(vectorizer, model)
predictor.save(args.output)  # model.keras, vocab.txt, text.json
top = predictor.top_k(tf.constant([args.prompt]), k=5)
words, probs = top["words"][0].numpy(), top["probabilities"][0].numpy()
print(f"saved {args.output}; after {args.prompt!r}: "
      + ", ".join(f"{w.decode()} {q:.3f}" for w, q in zip(words, probs)))
