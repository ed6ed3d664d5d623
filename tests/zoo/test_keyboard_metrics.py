"""Keyboard metrics: top-k accuracy and keystroke savings, by hand, against a brute force,
and end to end through ``training.evaluate`` and ``nwp-evaluate``."""

import ast
import io
import itertools
import json
import math
import pathlib
import time

import numpy as np
import pytest

import zoo.keyboard_metrics as keyboard_metrics
from zoo.keyboard_metrics import PROB_FLOOR, KeyboardMetrics

# ---------------------------------------------------------------------------------------------
# A hand-computed case.
#
#   id:     0    1        2        3      4      5       6       7        8      9
#   token:  ""   "[UNK]"  "<eos>"  "the"  "cat"  "then"  "they"  "there"  "car"  "<unk>"
#
# Special ids {0, 1, 2, 9}. Candidates sorted by string: car, cat, the, then, there, they.
# Prefix ranges: "" -> all 6; "c" -> car, cat; "t", "th", "the" -> the, then, there, they;
# "ther" -> there.
VOCAB = ["", "[UNK]", "<eos>", "the", "cat", "then", "they", "there", "car", "<unk>"]
SPECIAL = {0, 1, 2, 9}
PROBS = np.array([
    #  ""  UNK  eos   the   cat   then  they  there car   unk
    [0, 0, .40, .20, .10, .15, .05, .05, .05, 0],   # A: target "then" (5)
    [0, .02, .30, .20, .18, .15, .10, .05, 0, 0],   # B: target "there" (7)
    [0, 0, .50, .10, .10, .10, .10, .10, 0, 0],     # C: target "<eos>" (2)
    [0, 0, 0, .25, .25, .25, 0, 0, .25, 0],         # D: target "car" (8)
])
TARGETS = np.array([5, 7, 2, 8])
# A "then", p = .15. Over all ids only <eos> (.40) and "the" (.20) beat it: rank 2, a top-3
#   hit, not top-1. Strip (candidates only): the .20, then .15, cat .10 -> tapped: 1 key
#   (without: len("then") + 1 = 5). Prefix: 1 (j = 0).
# B "there", p = .05. Beaten by <eos>, the, cat, then, they: rank 5, no hit. Strip j = 0:
#   the, cat, then -> no. j = 1, 2, 3 ("t", "th", "the"): the .20, then .15, they .10 ->
#   no ("there" .05 is 4th). j = 4 ("ther"): only "there" -> tapped after 4 letters: 5 keys.
#   Without: 6. Next word: 6.
# C "<eos>", p = .50: top-1 and top-3 hit; special, so not a typed word.
# D "car", p = .25, four-way tie with the (3), cat (4), then (5): lower ids go first, rank 3,
#   no hit. Strip j = 0: the, cat, then -> no: 4 keys. j = 1 ("c"): car, cat -> tapped: 2.
#   Without: 4.
# Totals: tokens 4; top-1 1/4 (C); top-3 2/4 (A, C); typed words 3 (A, B, D);
#   keystrokes without 5 + 6 + 4 = 15, next word 1 + 6 + 4 = 11, prefix 1 + 5 + 2 = 8;
#   KSR next word 1 - 11/15 = 4/15, prefix 1 - 8/15 = 7/15;
#   perplexity = exp(-(ln .15 + ln .05 + ln .50 + ln .25) / 4) = (1 / 0.0009375) ** (1/4)
#   = 5.7148.
HAND = dict(tokens=4, top1_accuracy=0.25, top3_accuracy=0.5, typed_words=3,
            keystrokes_without=15, keystrokes_next_word=11, keystrokes_prefix=8,
            ksr_next_word=4 / 15, ksr_prefix=7 / 15)


def check(result, expected):
    for key, value in expected.items():
        if isinstance(value, float):
            assert result[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert result[key] == value, key


def test_the_hand_computed_case():
    m = KeyboardMetrics(VOCAB, SPECIAL)
    m.update(PROBS, TARGETS)
    result = m.result()
    check(result, HAND)
    assert result["perplexity"] == pytest.approx((1 / (.15 * .05 * .50 * .25)) ** 0.25)
    assert result["perplexity"] == pytest.approx(5.7148, abs=1e-4)
    assert set(result) == {"perplexity", "top1_accuracy", "top3_accuracy", "ksr_next_word",
                           "ksr_prefix", "tokens", "typed_words", "keystrokes_without",
                           "keystrokes_next_word", "keystrokes_prefix"}


def test_one_position_at_a_time_and_float32_give_the_same():
    m = KeyboardMetrics(VOCAB, SPECIAL)
    for p, t in zip(PROBS.astype(np.float32), TARGETS):
        m.update(p[None], np.array([t], np.int32))
    check(m.result(), HAND)


def test_a_strip_of_one_word():
    # k = 1, position D alone: "car" ties with "cat" (lower id 4) under "c" and "ca", and
    # j only goes to len - 1 = 2, so it is never the single suggestion: 4 keys, no saving.
    # Top-1: rank 3 over all ids, no.
    m = KeyboardMetrics(VOCAB, SPECIAL, k=1)
    m.update(PROBS[3:], TARGETS[3:])
    check(m.result(), dict(tokens=1, top1_accuracy=0.0, typed_words=1, keystrokes_without=4,
                           keystrokes_next_word=4, keystrokes_prefix=4, ksr_next_word=0.0,
                           ksr_prefix=0.0))


def test_a_word_as_likely_as_the_strip_words_but_with_a_lower_id_is_shown():
    # Position D with "car" given id 3's place: same probabilities, but now "car" has the
    # lowest id of the four tied words, so it is in the strip (and the top-1).
    vocab = ["", "[UNK]", "<eos>", "car", "cat", "then", "they", "there", "the", "<unk>"]
    m = KeyboardMetrics(vocab, SPECIAL)
    m.update(PROBS[3:], np.array([3]))
    check(m.result(), dict(top1_accuracy=1.0, top3_accuracy=1.0, keystrokes_without=4,
                           keystrokes_next_word=1, keystrokes_prefix=1))


def test_only_special_targets_leave_the_keystroke_savings_undefined():
    m = KeyboardMetrics(VOCAB, SPECIAL)
    m.update(PROBS[2:3], TARGETS[2:3])
    result = m.result()
    assert result["typed_words"] == 0 and result["keystrokes_without"] == 0
    assert result["ksr_next_word"] is None and result["ksr_prefix"] is None
    assert result["top1_accuracy"] == 1.0 and result["perplexity"] == pytest.approx(2.0)


def test_without_keystrokes_only_perplexity_and_accuracy():
    m = KeyboardMetrics(VOCAB, SPECIAL, keystrokes=False)
    m.update(PROBS, TARGETS)
    result = m.result()
    assert result["top3_accuracy"] == 0.5
    for key in ("ksr_next_word", "ksr_prefix", "typed_words", "keystrokes_without",
                "keystrokes_next_word", "keystrokes_prefix"):
        assert result[key] is None, key


def test_a_zero_probability_costs_the_floor_not_infinity():
    m = KeyboardMetrics(VOCAB, SPECIAL)
    m.update(PROBS[:1], np.array([0]))  # padding target, p = 0
    assert m.result()["perplexity"] == pytest.approx(1 / PROB_FLOOR, rel=1e-6)


@pytest.mark.parametrize("probs, targets, message", [
    (PROBS[:, :-1], TARGETS, r"probs must have shape \(n, 10\)"),
    (PROBS[0], TARGETS[:1], r"probs must have shape \(n, 10\)"),
    (PROBS, TARGETS[:3], r"targets must have shape \(4,\)"),
    (PROBS, TARGETS[:, None], r"targets must have shape \(4,\)"),
    (PROBS, np.array([5, 7, 2, 10]), "Target id 10 is outside"),
    (PROBS, np.array([5, -1, 2, 8]), "Target id -1 is outside"),
    (PROBS, TARGETS.astype(float), "integer ids"),
    (-PROBS, TARGETS, "negative, NaN or infinite"),
    (PROBS * np.nan, TARGETS, "negative, NaN or infinite"),
])
def test_bad_input_is_refused_with_a_message_and_not_counted(probs, targets, message):
    m = KeyboardMetrics(VOCAB, SPECIAL)
    with pytest.raises(ValueError, match=message):
        m.update(probs, targets)
    with pytest.raises(ValueError, match="nothing accumulated"):
        m.result()


def test_bad_construction_is_refused():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        KeyboardMetrics(VOCAB, {0, 10})
    with pytest.raises(ValueError, match="k must be an int >= 1"):
        KeyboardMetrics(VOCAB, SPECIAL, k=0)
    with pytest.raises(ValueError, match="non-empty"):
        KeyboardMetrics([], set())


def test_the_module_imports_neither_tensorflow_nor_keras():
    tree = ast.parse(pathlib.Path(keyboard_metrics.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "bisect", "math", "numpy"}, imported


# ---------------------------------------------------------------------------------------------
# Randomised: against an obviously correct reimplementation.

def brute_force(vocabulary, special, k, probs, targets):
    """Sorts the whole strip for every position and every prefix; no shortcuts."""
    candidates = [i for i in range(len(vocabulary)) if i not in special]
    out = dict(tokens=0, top1=0, topk=0, nats=0.0, typed_words=0, keystrokes_without=0,
               keystrokes_next_word=0, keystrokes_prefix=0)
    for p, t in zip(probs, targets):
        t = int(t)
        ranking = sorted(range(len(vocabulary)), key=lambda i: (-p[i], i))
        out["tokens"] += 1
        out["top1"] += ranking[0] == t
        out["topk"] += t in ranking[:k]
        out["nats"] -= math.log(max(float(p[t]), PROB_FLOOR))
        if t in special:
            continue
        word = vocabulary[t]
        out["typed_words"] += 1
        out["keystrokes_without"] += len(word) + 1

        def strip(prefix):
            shown = [c for c in candidates if vocabulary[c].startswith(prefix)]
            return sorted(shown, key=lambda c: (-p[c], c))[:k]

        out["keystrokes_next_word"] += 1 if t in strip("") else len(word) + 1
        cost = len(word) + 1
        for j in range(len(word)):
            if t in strip(word[:j]):
                cost = j + 1
                break
        out["keystrokes_prefix"] += cost
    return out


def random_case(rng, size):
    """Words over a 3-letter alphabet (many shared prefixes, words that are prefixes of
    others), one non-ASCII word, specials at random ids, and probabilities from small
    integer weights, so ties and zeros are common."""
    pool = ["".join(w) for n in range(1, 5) for w in itertools.product("abé", repeat=n)]
    words = list(rng.choice(pool, size=size - 4, replace=False))
    vocabulary = ["", "[UNK]"] + words
    for token in ("<eos>", "<unk>"):
        vocabulary.insert(int(rng.integers(2, len(vocabulary) + 1)), token)
    special = {0, 1, vocabulary.index("<eos>"), vocabulary.index("<unk>")}
    return vocabulary, special


@pytest.mark.parametrize("seed", range(6))
def test_matches_the_brute_force_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    vocabulary, special = random_case(rng, size=int(rng.integers(8, 40)))
    k = int(rng.integers(1, 5))
    n = 60
    weights = rng.integers(0, 4, size=(n, len(vocabulary))).astype(np.float64)
    weights[:, 0] += 1e-3  # no all-zero row
    probs = weights / weights.sum(axis=1, keepdims=True)
    targets = rng.integers(0, len(vocabulary), size=n)
    expected = brute_force(vocabulary, special, k, probs, targets)

    m = KeyboardMetrics(vocabulary, special, k=k)
    for chunk in np.array_split(np.arange(n), 3):
        m.update(probs[chunk], targets[chunk])
    got = m.result()
    for key in ("tokens", "typed_words", "keystrokes_without", "keystrokes_next_word",
                "keystrokes_prefix"):
        assert got[key] == expected[key], key
    assert got["top1_accuracy"] == expected["top1"] / n
    assert got[f"top{k}_accuracy"] == expected["topk"] / n
    assert got["perplexity"] == pytest.approx(math.exp(expected["nats"] / n), rel=1e-9)
    assert 0 <= got["ksr_next_word"] <= got["ksr_prefix"] < 1


def test_internal_slicing_does_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(7)
    vocabulary, special = random_case(rng, size=30)
    probs = rng.dirichlet(np.ones(30), size=200)
    targets = rng.integers(0, 30, size=200)
    whole = KeyboardMetrics(vocabulary, special)
    whole.update(probs, targets)
    monkeypatch.setattr(keyboard_metrics, "_SLICE_ELEMENTS", 7 * 30)  # 7 rows per slice
    sliced = KeyboardMetrics(vocabulary, special)
    sliced.update(probs, targets)
    assert sliced.result() == pytest.approx(whole.result(), rel=1e-12)


def test_ten_thousand_words_and_sixteen_thousand_positions_take_seconds():
    # The target is PTB's test set (82k positions, 10k words) in well under a minute; this
    # is a fifth of it, and a loop over prefixes in Python would take minutes.
    rng = np.random.default_rng(0)
    letters = np.array(list("etaoinshrdlucmfwypvbgkjqxz"))
    words = sorted({"".join(rng.choice(letters, size=int(rng.integers(1, 10))))
                    for _ in range(12000)})[:9996]
    vocabulary = ["", "[UNK]", "<eos>"] + words + ["<unk>"]
    special = {0, 1, 2, len(vocabulary) - 1}
    m = KeyboardMetrics(vocabulary, special)
    logits = rng.standard_normal((1024, len(vocabulary))).astype(np.float32) * 3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    started = time.monotonic()
    for _ in range(16):
        m.update(probs, rng.integers(0, len(vocabulary), size=1024))
    seconds = time.monotonic() - started
    assert m.result()["typed_words"] > 16000 * 0.99
    assert seconds < 15, f"{seconds:.1f} s"


# ---------------------------------------------------------------------------------------------
# training.evaluate: the metrics of a real model over a token stream, and nwp-evaluate.

@pytest.fixture(scope="module")
def default_text():
    from training.corpora import load_corpus
    from zoo import WordVectorizer

    corpus = load_corpus("default")
    vectorizer = WordVectorizer.fit(corpus.train, corpus.standardize, max_tokens=300)
    return vectorizer, vectorizer.encode_lines(corpus.test)


def tiny_model(name, vocab_size, **overrides):
    import keras

    from zoo import get_model

    keras.utils.set_random_seed(3)
    sizes = (dict(model_dim=16, num_heads=2, ffn_dim=16, num_layers=1, max_length=24)
             if name == "transformer" else dict(units=8, embedding_dim=8, num_layers=1))
    return get_model(name, vocab_size, **{**sizes, **overrides})


def test_carried_state_gives_the_perplexity_of_keras_evaluate(default_text):
    from training.callbacks import ResetStates
    from training.data import stream_dataset
    from training.evaluate import keyboard_report

    vectorizer, ids = default_text
    model = tiny_model("lstm", vectorizer.vocab_size, stateful=True)
    model.compile("adam")
    model.build((16, 10))
    logs = model.evaluate(stream_dataset(ids, 16, 10), verbose=0, return_dict=True,
                          callbacks=[ResetStates()])
    out = io.StringIO()
    report = keyboard_report(model, vectorizer, ids, bptt=10, batch_size=16,
                             progress_seconds=0, out=out)
    assert report["perplexity"] == pytest.approx(float(logs["perplexity"]), rel=1e-4)
    assert report["tokens"] == ids.size - 1
    special = {0, 1, vectorizer.eos_id, vectorizer.unk_id}
    assert report["typed_words"] == sum(int(t) not in special for t in ids[1:])
    assert 0 <= report["ksr_next_word"] <= report["ksr_prefix"] < 1
    assert "state carried" in report["context"]
    lines = out.getvalue().splitlines()
    assert len(lines) > 10 and lines[-1].startswith(f"keyboard metrics: {ids.size - 1:,}/")


@pytest.mark.parametrize("name, bptt, before", [("lstm", 6, 6), ("transformer", 16, 8)])
def test_overlapping_windows_predict_every_token_once_with_the_context_they_promise(
        default_text, name, bptt, before):
    # Window i predicts the targets of input positions s = i*bptt .. s+bptt-1 from
    # ids[max(0, s - before) : s+bptt]; the Transformer (max_length 24) gets 24 - 16 = 8
    # tokens of context. Reference: one model call per position, on exactly that context.
    import tensorflow as tf

    from training.evaluate import keyboard_report
    from zoo.text import OOV_ID, PAD_ID

    vectorizer, ids = default_text
    ids = ids[:45]
    model = tiny_model(name, vectorizer.vocab_size)
    report = keyboard_report(model, vectorizer, ids, bptt=bptt, batch_size=2,
                             carry_state=False, out=io.StringIO())
    assert f"{bptt} predicted positions after {before} tokens" in report["context"]
    reference = KeyboardMetrics(vectorizer.vocabulary,
                                {PAD_ID, OOV_ID, vectorizer.eos_id, vectorizer.unk_id})
    for i in range(ids.size - 1):
        start = max(0, (i // bptt) * bptt - before)
        logits = model(tf.constant(ids[None, start:i + 1]), training=False)[0, -1]
        reference.update(tf.nn.softmax(logits)[None].numpy(), ids[i + 1:i + 2])
    expected = reference.result()
    assert report["tokens"] == expected["tokens"] == ids.size - 1
    assert report["perplexity"] == pytest.approx(expected["perplexity"], rel=1e-5)
    for key in ("top1_accuracy", "top3_accuracy", "keystrokes_next_word",
                "keystrokes_prefix"):
        assert report[key] == expected[key], key


def test_character_models_get_accuracy_but_no_keystroke_savings():
    from training.evaluate import keyboard_report
    from zoo import WordVectorizer

    lines = ["to be or not to be", "that is the question"] * 5
    vectorizer = WordVectorizer.fit(lines, split="character")
    ids = vectorizer.encode_lines(lines)
    report = keyboard_report(tiny_model("lstm", vectorizer.vocab_size), vectorizer, ids,
                             bptt=8, batch_size=4, out=io.StringIO())
    assert report["tokens"] == ids.size - 1 and 0 <= report["top3_accuracy"] <= 1
    assert report["ksr_next_word"] is None and report["ksr_prefix"] is None


def test_keyboard_report_refuses_what_it_cannot_do(default_text):
    from training.evaluate import keyboard_report

    vectorizer, ids = default_text
    with pytest.raises(ValueError, match="no state to carry"):
        keyboard_report(tiny_model("transformer", vectorizer.vocab_size), vectorizer, ids,
                        carry_state=True)
    with pytest.raises(ValueError, match="different runs"):
        keyboard_report(tiny_model("lstm", vectorizer.vocab_size + 1), vectorizer, ids)
    with pytest.raises(ValueError, match="at least 2 tokens"):
        keyboard_report(tiny_model("lstm", vectorizer.vocab_size), vectorizer, ids[:1])


def test_nwp_train_and_nwp_evaluate_report_the_same_keyboard_metrics(tmp_path, capsys):
    # A tiny run with the keyboard metrics on (the default); nwp-evaluate reloads it, reads
    # the same test split and, with the run's bptt and batch, carries the state the same way.
    from tests.conftest import run_cli
    from training import evaluate

    run = tmp_path / "run"
    proc = run_cli("training.cli", "--corpus", "default", "--epochs", "1",
                   "--max-train-tokens", "3000", "--units", "8", "--embedding-dim", "8",
                   "--num-layers", "1", "--max-vocab", "200", "--bptt", "10",
                   "--batch-size", "16", "--output", run, timeout=300)
    assert "test next word: top-1 " in proc.stdout and "KSR prefix" in proc.stdout
    trained = json.loads((run / "metrics.json").read_text())
    for key in ("top1_accuracy", "top3_accuracy", "ksr_next_word", "ksr_prefix"):
        assert 0 <= trained[key] < 1, key

    assert evaluate.main(["--run", str(run)]) == 0
    report = json.loads((run / "keyboard_metrics.json").read_text())
    assert "KSR next word" in capsys.readouterr().out
    assert report["corpus"] == "default" and report["bptt"] == 10
    assert report["perplexity"] == pytest.approx(trained["test_perplexity"], rel=1e-4)
    for key in ("top1_accuracy", "top3_accuracy", "ksr_next_word", "ksr_prefix"):
        assert report[key] == pytest.approx(trained[key], abs=1e-3), key

    assert evaluate.main(["--run", str(run), "--max-tokens", "500"]) == 0
    assert json.loads((run / "keyboard_metrics.json").read_text())["tokens"] == 499

    assert evaluate.main(["--run", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
