"""nwp-export is never silent for long: a line per step, and one every few seconds."""

import time

import pytest

from serving.export import _stage, export_saved_model


def test_a_long_stage_says_what_it_does_then_still_every_few_seconds():
    lines = []
    with _stage(lines.append, "writing", every=0.05):
        time.sleep(0.33)
    assert lines[0] == "writing ..."
    still = lines[1:]
    assert 4 <= len(still) <= 7 and all(line.startswith("  still writing (") for line in still)
    time.sleep(0.15)
    assert len(lines) == 1 + len(still)  # the heartbeat stops with the stage


def test_a_stage_that_fails_stops_its_heartbeat_and_lets_the_error_through():
    lines = []
    with pytest.raises(KeyError):
        with _stage(lines.append, "checking", every=0.02):
            raise KeyError("broken")
    count = len(lines)
    time.sleep(0.1)
    assert len(lines) == count


def test_silent_without_a_progress_callable():
    with _stage(None, "anything", every=0.01):
        time.sleep(0.03)


@pytest.mark.slow
def test_export_reports_each_step(tiny_run, tmp_path):
    from zoo import NextWordPredictor

    lines = []
    export_saved_model(NextWordPredictor.load(tiny_run), tmp_path, "m", progress=lines.append)
    steps = [line for line in lines if not line.startswith("  still")]
    # serving_default, generate, score, complete and tokenize
    assert steps == ["tracing 5 signatures and writing the SavedModel ...",
                     "checking every signature on its warm-up request ..."]
