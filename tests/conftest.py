"""Shared fixtures: the real corpora folder and a tiny trained-and-exported model."""

import contextlib
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The folder the commands read ($NWP_DATA_DIR); NWP_TEST_DATA_DIR is its old name.
SHARED_DATA = pathlib.Path(os.environ.get("NWP_DATA_DIR") or os.environ.get("NWP_TEST_DATA_DIR")
                           or ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data():
    """``../shared/data`` (the real PTB, WikiText-2 and Tiny Shakespeare files)."""
    if not (SHARED_DATA / "ptb" / "ptb.valid.txt").exists():
        pytest.skip(f"real corpora not found at {SHARED_DATA} (set NWP_DATA_DIR)")
    return SHARED_DATA


def run_cli(module, *args, timeout=600, check=True):
    """Run ``python -m module args`` like a user would; returns the CompletedProcess."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{module} {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def assert_train_flags_refused(flags, message, capsys, tmp_path):
    """``nwp-train --corpus default --output <tmp>/run FLAGS`` exits 2 with a one-line error
    containing ``message`` (no traceback) before any work: no run folder is created."""
    from training.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--corpus", "default", "--output", str(tmp_path / "run"), *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()  # nothing was started


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder from a few seconds of nwp-train on the embedded default corpus."""
    out = tmp_path_factory.mktemp("run")
    run_cli("training.cli", "--corpus", "default", "--epochs", "1", "--max-train-tokens", "6000",
            "--embedding-dim", "16", "--units", "16", "--num-layers", "1", "--max-vocab", "400",
            "--batch-size", "16", "--bptt", "10", "--output", out)
    return out


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory):
    """``(model_base_path, version_dir)`` of the tiny run exported with nwp-export."""
    base = tmp_path_factory.mktemp("saved_models")
    run_cli("serving.export", "--run", tiny_run, "--model_base_path", base, "--model_name", "nwp")
    return base / "nwp", base / "nwp" / "1"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_server(*flags, model="nwp", grpc=False, log=None):
    """Start ``python -m serving.rest`` with ``flags`` on free loopback ports, writing its
    output to the file ``log`` (or a pipe); return ``(process, REST port, gRPC port or 0)``
    once ``GET /v1/models/<model>`` answers 200. Fails the test (with the server's log) if it
    exits or takes over 120 s. The caller stops the process."""
    port, grpc_port = _free_port(), (_free_port() if grpc else 0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "serving.rest", f"--rest_api_port={port}",
         f"--port={grpc_port}", *map(str, flags)],
        cwd=ROOT, stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models/{model}", timeout=2)
            return proc, port, grpc_port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                if log is not None:
                    log.seek(0)
                text = (log or proc.stdout).read()
                proc.wait()
                pytest.fail(f"server did not start: {text[-3000:]}")
            time.sleep(0.3)


@contextlib.contextmanager
def running_server(*flags, model="nwp", grpc=False):
    """:func:`launch_server`, as a context manager yielding ``(REST URL, gRPC target or
    None)``; stops the server after."""
    with tempfile.TemporaryFile("w+") as log:
        proc, port, grpc_port = launch_server(*flags, model=model, grpc=grpc, log=log)
        try:
            yield f"http://127.0.0.1:{port}", (f"127.0.0.1:{grpc_port}" if grpc else None)
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def serving_process(exported):
    """``(REST URL, gRPC target)`` of nwp-serve running in its own process on the exported
    tiny model."""
    with running_server("--model_name=nwp", f"--model_base_path={exported[0]}",
                        "--max_request_bytes=100000", "--max_batch_size_per_request=1000",
                        grpc=True) as addresses:
        yield addresses


@pytest.fixture(scope="session")
def server(serving_process):
    """REST base URL of the running nwp-serve."""
    return serving_process[0]


@pytest.fixture(scope="session")
def grpc_target(serving_process):
    """``host:port`` of the running nwp-serve's gRPC API."""
    return serving_process[1]
