"""The README's road can be pasted: its shell blocks run as written, in order, in one shell,
from a fresh folder set up as the quick start leaves it, on a tiny budget.

What this test changes, and nothing else: the lines in ``TINY`` get extra flags (a tiny
training budget), the ports 8500/8501 become free ones (so the test runs beside a server),
and the blocks in ``LONG`` are not run (each with the duration the README states).
"""

import os
import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from tests.conftest import ROOT, SHARED_DATA, _free_port

README = ROOT / "README.md"

# Blocks not run here (keyed by their first line), with the duration the README states.
LONG = {
    "bash scripts/quickstart.sh": "install and at most 4 minutes of training, then the test "
                                  "suite (about 15 minutes); the setup below is its tiny twin",
    "python examples/train_on_your_text.py": "a few minutes (3 epochs); tests/test_examples.py "
                                             "runs every example with --tiny",
}
# Lines run on a tiny budget: the README's line -> flags added before its comment.
TINY = {
    "nwp-train  --corpus ptb --epochs 6 --output runs/ptb": (
        "--epochs 1 --max-train-tokens 2000 --units 8 --embedding-dim 8 --num-layers 1 "
        "--batch-size 64 --no-keyboard-metrics --verbose 0"),
}


def shell_blocks(text):
    """The README's ```bash blocks, in order, each as its text."""
    return re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S)


def tiny(line):
    for start, flags in TINY.items():
        if line.startswith(start):
            command, hash_, comment = line.partition("  #")
            return f"{command.rstrip()} {flags}" + (f"  #{comment}" if hash_ else "")
    return line


def test_every_long_block_and_tiny_line_is_still_in_the_readme():
    blocks = shell_blocks(README.read_text(encoding="utf-8"))
    firsts = [block.splitlines()[0] for block in blocks]
    for start in LONG:
        assert any(first.startswith(start) for first in firsts), start
    lines = [line for block in blocks for line in block.splitlines()]
    for start in TINY:
        assert any(line.startswith(start) for line in lines), start


def _venv(folder):
    """``.venv/bin/activate`` and one executable per ``[project.scripts]`` entry of
    pyproject.toml, running this checkout's code with this Python."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    bin_dir = folder / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "activate").write_text(f'export PATH="{bin_dir}:$PATH"\n')
    for name, target in scripts.items():
        module, function = target.split(":")
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\n"
                        f"sys.exit({function}())\n")
        path.chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)


@pytest.mark.slow
def test_the_readme_blocks_run_in_order_after_the_quick_start(tmp_path):
    if not (SHARED_DATA / "ptb" / "ptb.train.txt").exists():
        pytest.skip(f"PTB not found at {SHARED_DATA} (set NWP_DATA_DIR)")
    _venv(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NWP_DATA_DIR": str(SHARED_DATA),
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    grpc, rest = _free_port(), _free_port()
    setup = f"""
. .venv/bin/activate
nwp-train --corpus default --output runs/quickstart --epochs 1 --max-train-tokens 2000 \\
    --units 8 --embedding-dim 8 --num-layers 1 --max-vocab 300 --verbose 0
nwp-export --run runs/quickstart --model_base_path saved_models --model_name nwp
"""
    blocks, skipped = [], []
    for block in shell_blocks(README.read_text(encoding="utf-8")):
        first = block.splitlines()[0]
        if any(first.startswith(start) for start in LONG):
            skipped.append(first)
            continue
        block = "\n".join(tiny(line) for line in block.splitlines())
        blocks.append(block.replace("8501", str(rest)).replace("8500", str(grpc)))
    assert len(skipped) == len(LONG) and len(blocks) >= 5
    script = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT", setup]
    for i, block in enumerate(blocks):  # (curl's answers end without a newline)
        script += [f'echo; echo "@@ block {i} at $SECONDS s"', block]
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout
    done = re.findall(r"^@@ block (\d+) at \d+ s$", out, re.M)
    assert proc.returncode == 0, (f"stopped in block {done[-1] if done else 'setup'}:\n"
                                  f"{blocks[int(done[-1])] if done else setup}\n"
                                  f"{out[-2000:]}\n{proc.stderr[-3000:]}")
    print("\n".join(re.findall(r"^@@ .*$", out, re.M)))
    assert len(done) == len(blocks)
    assert '"error"' not in out, out[-3000:]
    assert "'the company said' -> " in out  # the client's and the LiteRT runner's top-5
    assert '"predictions"' in out and '"outputs"' in out and '"signature_def"' in out
    assert (tmp_path / "saved_models" / "ptb" / "1" / "model.tflite").exists()
