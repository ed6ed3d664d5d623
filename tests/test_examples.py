"""The scripts in ``examples/`` run as a newcomer runs them (``python examples/NAME.py``
from the repository root), each on its tiny budget, and say something true."""

import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LINE = "one two three four five six seven eight nine ten"


def run_example(name, *args):
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_examples_import_only_package_level_names():
    for path in EXAMPLES.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(from|import) (zoo|training|serving)\.", text, re.M), path


@pytest.fixture(scope="module")
def own_text_run(tmp_path_factory):
    """``(text file, run folder, stdout)`` of train_on_your_text.py on a counting text."""
    folder = tmp_path_factory.mktemp("own_text")
    text = folder / "counting.txt"
    text.write_text("\n".join([LINE] * 400) + "\n", encoding="utf-8")
    out = run_example("train_on_your_text.py", text, "--tiny", "--epochs", "6",
                      "--prompt", "three four", "--output", folder / "run")
    return text, folder / "run", out


def test_train_on_your_text_learns_the_text_and_reports_its_perplexity(own_text_run):
    import keras

    from zoo import NextWordPredictor

    text, run, out = own_text_run
    for name in ("model.keras", "vocab.txt", "text.json"):
        assert (run / name).exists()
    # The counting text has one next word after every word: the model has learned it.
    suggestions = re.search(r"after 'three four': (.*)", out).group(1).split(", ")
    assert suggestions[0].split()[0] == "five", out
    # The printed validation perplexity is exp(mean next-token NLL) on the last 10% of the
    # lines, in windows of 20 tokens from a zero state: recomputed here with NumPy.
    printed = float(re.search(r"validation perplexity ([0-9.]+)", out).group(1))
    predictor = NextWordPredictor.load(run)
    lines = text.read_text(encoding="utf-8").splitlines()
    ids = predictor.vectorizer.encode_lines(lines[int(len(lines) * 0.9):])
    nll = []
    for start in range(0, ids.size - 1, 20):
        x = ids[start:start + 20]
        y = ids[start + 1:start + 21]
        x = x[:y.size]
        logits = keras.ops.convert_to_numpy(predictor.model(x[None, :])).astype(np.float64)[0]
        logits -= logits.max(axis=-1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        nll.extend(-log_probs[np.arange(y.size), y])
    assert printed == pytest.approx(math.exp(np.mean(nll)), rel=1e-3)
    assert printed < 3.0  # uniform over the 10 words would be 10


def test_vanishing_gradients_table():
    out = run_example("vanishing_gradients.py", "--tiny")
    assert "baseline MSE 0.1667" in out  # Var(U1 + U2) = 2/12
    rows = {m.group(1): [float(v) for v in m.groups()[1:]] for m in re.finditer(
        r"^\| (tanh RNN|IRNN|LSTM) \| (\S+) \| (\S+) \| (\S+) \| (\S+) \|$", out, re.M)}
    assert sorted(rows) == ["IRNN", "LSTM", "tanh RNN"], out
    for init_ratio, trained_ratio, mse, relative in rows.values():
        assert all(math.isfinite(v) for v in (init_ratio, trained_ratio, mse))
        assert relative == pytest.approx(mse * 6, abs=2e-3)
    # At initialisation the tanh recurrence damps the first step's gradient; the identity
    # recurrence of the IRNN passes it on (ReLU units that are on have derivative 1).
    assert rows["tanh RNN"][0] < 0.5
    assert rows["IRNN"][0] > 5 * rows["tanh RNN"][0]


def test_export_and_query_savedmodel_equals_litert(own_text_run, tmp_path):
    _, run, _ = own_text_run
    out = run_example("export_and_query.py", "--run", run, "--model_base_path", tmp_path,
                      "--prompt", "three four")
    version = tmp_path / "nwp" / "1"
    assert (version / "saved_model.pb").exists() and (version / "model.tflite").exists()

    def parse(label):
        pairs = re.search(rf"^{label}:\s+(.*)$", out, re.M).group(1).split(", ")
        return [(p.split()[0], float(p.split()[1])) for p in pairs]

    saved, lite = parse("SavedModel"), parse("LiteRT")
    assert [w for w, _ in saved] == [w for w, _ in lite] and saved[0][0] == "five"
    np.testing.assert_allclose([q for _, q in lite], [q for _, q in saved], atol=2e-4)
    assert re.search(r"^generate \(greedy\): five six", out, re.M), out


def test_package_level_names_resolve_lazily():
    code = (
        "import sys, importlib, training, serving\n"
        "assert 'tensorflow' not in sys.modules\n"
        "from serving import LiteRTPredictor\n"
        "assert 'tensorflow' not in sys.modules  # the LiteRT runner stays TensorFlow-free\n"
        "for package in (training, serving):\n"
        "    for name, module in package._EXPORTS.items():\n"
        "        assert getattr(package, name) is getattr(importlib.import_module(module), name)\n"
        "    assert sorted(package.__all__) == sorted(package._EXPORTS)\n"
        "try:\n"
        "    training.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
