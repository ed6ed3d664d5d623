"""Words in the repository cite only what a reader can find: papers, public documentation and
upstream source, never notes that live outside the repository."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
FOLDERS = ("zoo", "training", "serving", "tests", "benchmarks", "scripts", "examples", "docs")
SUFFIXES = {".py", ".md", ".sh", ".toml", ".txt", ".html", ".js", ".cfg"}
# Paths into a folder beside the checkout (notes, data) and the name of a private brief.
OUTSIDE = re.compile(r"shared/(reference|data)|\bthe seed's\b|\(the seed:", re.I)
# The test fixtures read the real corpora from beside the checkout (tests need them).
ALLOWED = {"tests/conftest.py"}


def _files():
    yield from (ROOT / name for name in ("README.md", "pyproject.toml") if (ROOT / name).exists())
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                yield path


def test_the_scan_sees_the_repository():
    names = {p.relative_to(ROOT).as_posix() for p in _files()}
    assert {"README.md", "zoo/cells.py", "docs/benchmarks.md", "tests/conftest.py"} <= names


def test_no_word_points_outside_the_repository():
    me = pathlib.Path(__file__).resolve()
    hits = []
    for path in _files():
        name = path.relative_to(ROOT).as_posix()
        if name in ALLOWED or path.resolve() == me:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if OUTSIDE.search(line):
                hits.append(f"{name}:{number}: {line.strip()}")
    assert not hits, "cite the paper, public docs or upstream source instead:\n" + "\n".join(hits)


def test_the_pattern_catches_what_it_should():
    assert OUTSIDE.search("see ``shared/reference/tf_serving_api.md``, section 5")
    assert OUTSIDE.search("--data-dir ../shared/data")
    assert OUTSIDE.search("In the seed's notation")
    assert not OUTSIDE.search("set_random_seed(seed); the same seed gives the same text")
