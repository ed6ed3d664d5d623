"""Samplers and generation: greedy, temperature, top-k, top-p, beam; seeded."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from zoo import NextWordPredictor, WordVectorizer, get_model
from zoo.sampling import (NEG, beam_search, filter_logits, generate, greedy, sample,
                          sample_in_graph)

LOGITS = np.log(np.array([[0.1, 0.5, 0.15, 0.25], [0.4, 0.3, 0.2, 0.1]], "float32"))


def test_greedy_picks_the_argmax():
    np.testing.assert_array_equal(greedy(LOGITS), [1, 0])


def test_top_k_never_samples_outside_the_k_most_likely():
    draws = np.stack([sample(LOGITS, seed=s, top_k=2).numpy() for s in range(200)])
    assert set(draws[:, 0]) == {1, 3} and set(draws[:, 1]) == {0, 1}


def test_top_p_keeps_the_smallest_nucleus():
    kept = np.asarray(filter_logits(LOGITS, top_p=0.7)) > NEG / 2
    # row 0 sorted 0.5, 0.25, 0.15, 0.1: 0.5 < 0.7 so 0.25 is needed too -> {1, 3}
    # row 1 sorted 0.4, 0.3, ...: 0.4 + 0.3 >= 0.7 -> {0, 1}
    np.testing.assert_array_equal(kept, [[0, 1, 0, 1], [1, 1, 0, 0]])


def test_sampling_follows_the_distribution_and_temperature_sharpens_it():
    logits = np.repeat(LOGITS[:1], 4000, axis=0)
    counts = np.bincount(sample(logits, seed=1).numpy(), minlength=4) / 4000
    np.testing.assert_allclose(counts, [0.1, 0.5, 0.15, 0.25], atol=0.03)
    cold = np.bincount(sample(logits, seed=1, temperature=0.25).numpy(), minlength=4) / 4000
    p = np.array([0.1, 0.5, 0.15, 0.25]) ** 4
    np.testing.assert_allclose(cold, p / p.sum(), atol=0.03)


def test_same_seed_same_draws_other_seed_other_draws():
    logits = np.zeros((64, 50), "float32")
    a, b = sample(logits, seed=7, step=3).numpy(), sample(logits, seed=7, step=3).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sample(logits, seed=8, step=3).numpy())


def test_top_p_of_one_keeps_every_token_even_with_peaked_logits():
    logits = np.array([[20.0, 0.0, -5.0, -10.0, -30.0]], "float32")
    np.testing.assert_array_equal(filter_logits(logits, top_p=1.0), logits)


@pytest.mark.parametrize("kwargs", [{"top_k": 2.5}, {"top_k": True}, {"top_k": "3"},
                                    {"top_p": "0.9"}, {"top_p": False},
                                    {"temperature": None}, {"temperature": True}])
def test_bad_sampler_arguments(kwargs):
    with pytest.raises(ValueError):
        sample(LOGITS, seed=0, **kwargs)


def test_the_conventions_of_the_exported_generate_signature():
    logits = np.random.default_rng(0).normal(size=(256, 9)).astype("float32")
    argmax = np.argmax(logits, axis=-1)
    for greedy_kwargs in ({"temperature": 0.0}, {"temperature": -1.0}, {"top_p": 0.0},
                          {"top_p": -0.5}, {"top_k": 1}):
        np.testing.assert_array_equal(sample(logits, seed=3, **greedy_kwargs), argmax)
    everything = sample(logits, seed=3).numpy()
    for keep_all in ({"top_k": 0}, {"top_k": -2}, {"top_k": 9}, {"top_k": 50},
                     {"top_p": 1.0}, {"top_p": 1.5}):
        np.testing.assert_array_equal(sample(logits, seed=3, **keep_all), everything)
        np.testing.assert_array_equal(filter_logits(logits, **keep_all), logits)
    assert not np.array_equal(everything, argmax)


def test_eager_and_in_graph_samplers_draw_the_same_tokens():
    logits = np.random.default_rng(1).normal(size=(64, 30)).astype("float32") * 3
    graph_sampler = tf.function(sample_in_graph)
    for temperature, top_k, top_p in [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8),
                                      (0.5, 10, 0.9), (0.0, 0, 1.0), (2.0, -1, 2.0)]:
        for seed, step in [(0, 0), (5, 3), (2**40, 7)]:
            eager = sample(logits, seed, step, temperature, top_k, top_p).numpy()
            graph = graph_sampler(
                tf.constant(logits), tf.constant(seed, tf.int64), tf.constant(step),
                tf.constant(temperature), tf.constant(top_k), tf.constant(top_p)).numpy()
            np.testing.assert_array_equal(eager, graph)
            kept = np.asarray(filter_logits(logits, top_k, top_p)) > NEG / 2
            assert kept[np.arange(64), eager].all()  # never outside top-k and the nucleus


def test_python_generation_equals_the_exported_generate_with_the_same_seed(model):
    """``zoo.sampling.generate`` (eager) against ``NextWordPredictor.generate`` traced with
    ``tf.function`` (the exported signature's graph), padding and [UNK] banned in both."""
    vectorizer = WordVectorizer(["<eos>", "a", "b", "c", "d"])
    predictor = NextWordPredictor(vectorizer, model)
    signature = tf.function(predictor.generate)
    real_step = model.step

    def banned_step(token_ids, states):  # what the signature does to ids 0 and 1
        logits, states = real_step(token_ids, states)
        return tf.concat([tf.fill([tf.shape(logits)[0], 2], NEG), logits[:, 2:]], 1), states

    prompt = [[vectorizer.eos_id, vectorizer.vocabulary.index("a"),
               vectorizer.vocabulary.index("c")]]
    for seed, temperature, top_k, top_p in [(0, 1.0, 0, 1.0), (11, 0.8, 3, 0.95),
                                            (4, 1.5, 0, 0.7), (9, 0.0, 2, 0.5)]:
        out = signature(tf.constant(["a c"]), tf.constant([8]), tf.constant([temperature]),
                        tf.constant([top_k]), tf.constant([top_p]),
                        tf.constant([seed], tf.int64))
        model.step = banned_step
        try:
            ids = generate(model, np.array(prompt), 8, sampler="sample", seed=seed,
                           temperature=temperature, top_k=top_k, top_p=top_p)[0]
        finally:
            model.step = real_step
        expected = " ".join(vectorizer.vocabulary[i] for i in ids)
        assert out["continuation"].numpy()[0].decode() == expected


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    m = get_model("gru", 7, units=6, embedding_dim=4, num_layers=1)
    m.build((None, 3))
    return m


def test_generate_greedy_equals_argmax_of_the_full_call(model):
    prompt = np.array([[1, 2, 3], [4, 5, 6]], "int32")
    new = generate(model, prompt, max_new_tokens=4)
    seq = prompt
    for _ in range(4):  # recompute from scratch with the full-sequence call
        seq = np.concatenate([seq, np.argmax(model(seq), -1)[:, -1:].astype("int32")], axis=1)
    np.testing.assert_array_equal(new, seq[:, 3:])


def test_transformer_generates_up_to_exactly_max_length_tokens():
    keras.utils.set_random_seed(0)
    t = get_model("transformer", 7, model_dim=8, num_heads=2, ffn_dim=8, max_length=5)
    assert generate(t, np.array([[1, 2, 3]]), max_new_tokens=2).shape == (1, 2)  # 5 fed
    with pytest.raises(ValueError, match="max_length=5"):
        generate(t, np.array([[1, 2, 3]]), max_new_tokens=4)


def test_bad_prompts_are_value_errors(model):
    with pytest.raises(ValueError, match="prompt_ids"):
        beam_search(model, np.array([1, 2, 3]), 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, np.array([[1]]), -1)
    with pytest.raises(ValueError, match="logits"):
        sample(np.array([1.0, 2.0]), seed=0)


def test_generate_with_a_seed_is_reproducible(model):
    prompt = np.array([[1, 2]], "int32")
    a = generate(model, prompt, 6, sampler="sample", seed=5, top_k=3)
    np.testing.assert_array_equal(a, generate(model, prompt, 6, sampler="sample", seed=5,
                                              top_k=3))


def test_beam_search_finds_the_best_sequence_by_exhaustive_search(model):
    prompt = np.array([[1, 2]], "int32")
    ids, scores = beam_search(model, prompt, max_new_tokens=3, beam_width=7 * 7 * 7)

    def logprob(cont):
        seq = np.concatenate([prompt[0], cont])[None].astype("int32")
        logp = tf.nn.log_softmax(model(seq)).numpy()[0]
        return sum(logp[len(prompt[0]) - 1 + i, t] for i, t in enumerate(cont))

    best = max(itertools.product(range(7), repeat=3), key=logprob)
    np.testing.assert_array_equal(ids[0, 0], best)
    assert scores[0, 0] == pytest.approx(logprob(best), abs=1e-4)
    assert np.all(np.diff(scores[0]) <= 1e-6)
