"""The synthetic long-range tasks: their construction and baselines, checked by hand."""

import math

import numpy as np
import pytest

from training.synthetic import adding_problem, baseline, build, copy_task


def test_adding_problem_marks_one_step_in_each_half_and_sums_them():
    x, y = adding_problem(500, 20, seed=1)
    assert x.shape == (500, 20, 2) and y.shape == (500, 1)
    markers = x[..., 1]
    np.testing.assert_array_equal(markers.sum(1), 2)
    assert np.all(markers[:, :10].sum(1) == 1) and np.all(markers[:, 10:].sum(1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[..., 0] * markers).sum(1), rtol=1e-6)


def test_always_answering_one_scores_the_documented_baseline():
    _, y = adding_problem(200_000, 10, seed=2)
    assert np.mean((y - 1.0) ** 2) == pytest.approx(baseline("adding", 10), rel=0.02)


def test_copy_task_layout_and_baseline():
    x, y = copy_task(3, delay=5, symbols=4, seed=0)
    assert x.shape == y.shape == (3, 13)
    np.testing.assert_array_equal(x[:, 8], 9)  # delimiter right before the answer
    np.testing.assert_array_equal(y[:, -4:], x[:, :4])
    assert not y[:, :-4].any() and not x[:, 9:].any()
    assert baseline("copy", 5, symbols=4) == pytest.approx(4 * math.log(8) / 13)


@pytest.mark.parametrize("task, shape", [("adding", (2, 1)), ("copy", (2, 13, 10))])
def test_models_take_the_tasks(task, shape):
    x, _ = (adding_problem(2, 13) if task == "adding" else copy_task(2, 5, 4))
    assert tuple(build(task, "gru", {}, 4)(x).shape) == shape


def test_bad_sizes():
    with pytest.raises(ValueError):
        adding_problem(0, 10)
    with pytest.raises(ValueError):
        copy_task(2, -1)
