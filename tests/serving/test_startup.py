"""Start-up refusals: a gRPC port already taken, out-of-range thread flags."""

import socket
import subprocess
import sys

from tests.conftest import ROOT, _free_port


def _serve(*flags):
    return subprocess.run([sys.executable, "-m", "serving.rest", *flags], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_a_grpc_port_in_use_is_an_error_even_with_port_sharing(exported):
    # grpcio sets SO_REUSEPORT by default, so two servers could silently share a port.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        proc = _serve(f"--rest_api_port={_free_port()}", f"--port={port}", "--model_name=nwp",
                      f"--model_base_path={exported[0]}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"cannot bind gRPC to 127.0.0.1:{port}" in proc.stderr


def test_thread_flags_out_of_range():
    proc = _serve("--tensorflow_intra_op_parallelism=99999999999")
    assert proc.returncode == 2
    assert "--tensorflow_intra_op_parallelism must be in 0..4096" in proc.stderr


def test_rest_port_zero_announces_the_port_it_bound(exported):
    # --rest_api_port=0 asks for any free port; the start-up line must name the real one,
    # which then answers model status.
    import json
    import re
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "serving.server", "--rest_api_port=0",
                             f"--port={_free_port()}", "--model_name=nwp",
                             f"--model_base_path={exported[0]}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line = ""
        for line in proc.stdout:
            if line.startswith("serving model"):
                break
        match = re.search(r"http://127\.0\.0\.1:(\d+)/v1/models/nwp", line)
        assert match and match.group(1) != "0", line
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/v1/models/nwp",
                                    timeout=30) as answer:
            status = json.load(answer)["model_version_status"]
        assert [s["state"] for s in status] == ["AVAILABLE"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
