"""The LiteRT reference runner: next words from a ``.tflite`` bundle, without TensorFlow.

This is what a phone app does, in Python: load the bundle that ``nwp-export --litert``
wrote (``model.tflite``, ``litert.json``, the tokenizer), turn the prompt into ids with the
same rules as training (:mod:`serving.tokenizer`), feed them one by one through the
``step`` signature while carrying the state, and show the ``k`` most likely next words. For a
``word`` front end it imports only ``ai_edge_litert``, NumPy and the standard library (a
test checks that ``tensorflow`` is never imported); a subword bundle's ``tokenizer.tflite``
needs tensorflow-text's TFLite op registrar (:class:`TFLiteTokenizer`).

Python API::

    from serving.litert import LiteRTPredictor
    p = LiteRTPredictor.load("saved_models/nwp/1")
    p.suggest("the meaning of")            # [("life", 0.12), ...], most likely first
    p.complete("the mean")                  # [("meaning", 0.4), ...]: words starting "mean"
    p.reset(); p.feed_text("the")         # keyboard use: keep the state between key presses
    p.feed(p.tokenizer.encode("cat")); p.top_k(3)   # each new word: encode, feed (no <eos>)

``feed_text`` starts a line (an ``<eos>`` first): call it once per text, then ``feed`` the
ids of each word typed after it.

The runner is two files, ``serving/litert.py`` and ``serving/tokenizer.py``; they need only
``numpy`` and ``ai-edge-litert`` (an app prototype can copy them without this package).

Command line::

    nwp-litert saved_models/nwp/1 "the meaning of" "a function" [--k 5] [--threads 1]
    nwp-litert saved_models/nwp/1 "the mean" --complete     # words starting with "mean"

A prompt's answer is that of the SavedModel's ``serving_default``: the prompt is read as the
start of a line (an ``<eos>`` first), only its last ``max_prompt_tokens`` tokens count, and
padding and ``[UNK]`` are never suggested (a corpus's own ``<unk>`` can be). An empty
prompt asks for the first word of a line. A subword bundle (WordPiece, SentencePiece,
characters) answers whole words, by the SavedModel's word beam search
(:meth:`LiteRTPredictor.suggest_words`, its tables in the manifest's ``word_search`` entry);
a subword bundle written before that entry existed answers the next pieces, as
:meth:`LiteRTPredictor.top_k` does after ``feed``. :meth:`LiteRTPredictor.complete` is the
SavedModel's ``complete`` (prefix completion of the last, unfinished word).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import sys
import time

import numpy as np

from serving.tokenizer import OOV_ID, PAD_ID, WHITESPACE, Tokenizer, standardize_text

TFLITE_FILE = "model.tflite"  # the name TF Serving's --prefer_tflite_model looks for
MANIFEST_FILE = "litert.json"
SIGNATURE = "step"
TOKENIZER_TFLITE_FILE = "tokenizer.tflite"  # a subword front end's tokenizer (TFText ops)
TOKENIZER_SIGNATURE = "tokenize"
FORMAT_VERSION = 1
# White space a prompt's end is stripped of before a word search (the SavedModel's
# zoo.word_search: RE2's \s and the vertical tab).
_SPACE = "\t\n\x0b\x0c\r "


class BundleError(ValueError):
    """A folder that is not a LiteRT bundle, or a damaged one (the message says why)."""


class TFLiteTokenizer:
    """A subword bundle's tokenizer: ``tokenizer.tflite`` (signature ``tokenize``, the
    front end's tensorflow-text ops as TFLite custom ops) run with
    ``InterpreterWithCustomOps`` and ``tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS``
    (this one path imports ``tensorflow_text``; the ``word`` bundles stay TF-free).

    Args:
        directory: the bundle folder.
        config: the manifest's ``tokenizer`` entry (``file``, ``signature``, ``eos_id``,
            ``surface``: each id's text, a leading space where it starts a word; ``names``:
            each id's name in an answer).

    Raises:
        BundleError: a missing file, or tensorflow-text's op registrar cannot be loaded.
    """

    def __init__(self, directory, config):
        from ai_edge_litert.interpreter import InterpreterWithCustomOps

        path = os.path.join(directory, config.get("file", TOKENIZER_TFLITE_FILE))
        if not os.path.exists(path):
            raise BundleError(f"{path} is missing: the bundle is incomplete.")
        try:
            import tensorflow_text
        except ImportError as err:
            raise BundleError(f"This bundle's {config.get('kind')} tokenizer uses "
                              f"tensorflow-text's TFLite ops, which need tensorflow-text "
                              f"installed ({err}).") from None
        self.interpreter = InterpreterWithCustomOps(
            model_path=path,
            custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)
        self._runner = self.interpreter.get_signature_runner(
            config.get("signature", TOKENIZER_SIGNATURE))
        self.surface = list(config["surface"])
        self.eos_id = int(config["eos_id"])
        self.vocab_size = len(self.surface)
        self.vocabulary = list(config["names"])  # as the SavedModel names its answers

    def encode_batch(self, texts):
        """Ids of each text: ``list`` of ``list[int]`` (no end-of-line id)."""
        out = self._runner(text=np.array(list(texts), dtype=object))
        ids, splits = out["ids"], out["row_splits"]
        return [ids[splits[i]:splits[i + 1]].tolist() for i in range(len(splits) - 1)]

    def encode(self, text):
        """Ids of ``text``'s tokens (``list[int]``), without the leading ``<eos>``."""
        return self.encode_batch([text])[0]

    def prompt_ids(self, text, max_tokens=None):
        """``eos_id`` then the ids of ``text``, the last ``max_tokens`` kept."""
        ids = [self.eos_id] + self.encode(text)
        return ids if max_tokens is None else ids[-int(max_tokens):]


def _softmax(logits):
    z = logits.astype(np.float64) - logits.max()
    p = np.exp(z)
    return p / p.sum()


class LiteRTPredictor:
    """Next-word suggestions from a LiteRT bundle, one ``step`` call per token.

    Args:
        directory: the bundle folder (``litert.json``, ``model.tflite``, tokenizer files).
        num_threads: interpreter threads (1 is what a keyboard gets; more does not help at
            batch 1).

    Raises:
        BundleError: a missing or unreadable file, an unknown ``format_version``, or a
            ``.tflite`` whose ``step`` signature does not match the manifest.
    """

    def __init__(self, directory, num_threads=1):
        from ai_edge_litert.interpreter import Interpreter

        manifest_path = os.path.join(directory, MANIFEST_FILE)
        if not os.path.isdir(directory):
            raise BundleError(f"{directory} is not a folder; give the LiteRT bundle folder that "
                              "nwp-export --litert wrote (the version folder).")
        if not os.path.exists(manifest_path):
            versions = sorted(int(n) for n in os.listdir(directory)
                              if n.isascii() and n.isdigit() and int(n) > 0
                              and os.path.exists(os.path.join(directory, n, MANIFEST_FILE)))
            hint = (f" It is a model folder: give a version folder, e.g. "
                    f"{os.path.join(directory, str(versions[-1]))}." if versions else
                    " Export one with nwp-export --litert.")
            raise BundleError(f"{directory} is not a LiteRT bundle: it has no "
                              f"{MANIFEST_FILE}.{hint}")
        try:
            with open(manifest_path, encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as err:
            raise BundleError(f"{manifest_path} cannot be read: {err}") from None
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            got = manifest.get("format_version") if isinstance(manifest, dict) else manifest
            raise BundleError(f"{manifest_path} has format_version {got!r}; this runner reads "
                              f"{FORMAT_VERSION}.")
        self.manifest = manifest
        model_path = os.path.join(directory, manifest.get("model_file", TFLITE_FILE))
        if not os.path.exists(model_path):
            raise BundleError(f"{model_path} is missing: the bundle is incomplete.")
        try:
            config = manifest.get("tokenizer") or {"format": "json"}
            if config.get("format") == "tflite":  # a subword front end (TFText ops)
                self.tokenizer = TFLiteTokenizer(directory, config)
            else:
                self.tokenizer = Tokenizer.load(directory)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise BundleError(f"The tokenizer in {directory} cannot be loaded: {err}") from None
        try:
            self.interpreter = Interpreter(model_path=model_path, num_threads=num_threads)
            self._runner = self.interpreter.get_signature_runner(SIGNATURE)
        except (RuntimeError, ValueError) as err:
            raise BundleError(f"{model_path} is not a usable LiteRT model: {err}") from None
        try:
            self._spec = [(s["name"], tuple(int(d) for d in s["shape"]), np.dtype(s["dtype"]))
                          for s in manifest["inputs"][1:]]
            self.vocab_size = int(manifest["vocab_size"])
            self.max_prompt_tokens = manifest.get("max_prompt_tokens") or None
            self.max_positions = manifest.get("max_positions") or None
            self._never = np.array(manifest.get("never_suggest_ids", [PAD_ID, OOV_ID]),
                                   np.int64)
            self._batch = self._spec[0][1][0] if self._spec else 1
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise BundleError(f"{manifest_path} does not describe a step signature "
                              f"({type(err).__name__}: {err}); export the bundle again.") from None
        self._check_signature(model_path)
        if self.tokenizer.vocab_size != self.vocab_size:
            raise BundleError(f"The tokenizer has {self.tokenizer.vocab_size} ids but the model "
                              f"predicts {self.vocab_size}: files from different runs.")
        if self._never.size and not (0 <= self._never.min() and
                                     self._never.max() < self.vocab_size):
            raise BundleError(f"{manifest_path}: never_suggest_ids must be ids below "
                              f"{self.vocab_size}.")
        self._words = self.tokenizer.vocabulary
        self.word_search = self._read_word_search(manifest_path)
        self.reset()

    def _read_word_search(self, manifest_path):
        """The manifest's ``word_search`` entry (a subword bundle) as the search's tables, or
        None (a word bundle, or a subword bundle written before the entry existed: its
        ``suggest`` answers next pieces)."""
        entry = self.manifest.get("word_search")
        if entry is None:
            return None
        try:
            vocab = self.vocab_size
            starts = np.array(entry["word_start"], dtype=bool)
            texts = [str(t) for t in entry["piece_text"]]
            beam_width, max_pieces = int(entry["beam_width"]), int(entry["max_pieces"])
            if starts.shape != (vocab,) or len(texts) != vocab:
                raise ValueError(f"word_start and piece_text must have {vocab} entries, got "
                                 f"{starts.size} and {len(texts)}")
            if beam_width < 1 or max_pieces < 1:
                raise ValueError("beam_width and max_pieces must be >= 1")
            ids = {name: entry.get(name) for name in ("pad_id", "unk_id", "eos_id")}
            eos = int(ids["eos_id"])
            if not 0 <= eos < vocab:
                raise ValueError(f"eos_id {eos} is outside the vocabulary")
        except (KeyError, TypeError, ValueError) as err:
            raise BundleError(f"{manifest_path}: its word_search entry is damaged "
                              f"({type(err).__name__}: {err}); export the bundle again.") from None
        if self.max_positions is not None and max_pieces >= self.max_positions:
            raise BundleError(f"{manifest_path}: word_search max_pieces={max_pieces} leaves no "
                              f"room for the prompt in {self.max_positions} positions.")
        special = np.zeros(vocab, bool)
        for i in ids.values():
            if i is not None and 0 <= int(i) < vocab:
                special[int(i)] = True
        boundary = starts.copy()
        boundary[eos] = True
        pad = ids["pad_id"]
        if pad is not None and 0 <= int(pad) < vocab:
            boundary[int(pad)] = False
        return {"beam_width": beam_width, "max_pieces": max_pieces,
                "start": starts & ~special, "continue": ~starts & ~special,
                "boundary": boundary,
                # a word-start piece's own white space (a character model's " ") is not in
                # the word
                "surface": [t.lstrip() if s else t for t, s in zip(texts, starts)]}

    def _check_signature(self, model_path):
        """The ``.tflite``'s ``step`` inputs must be the manifest's, name by name, with the
        same shapes and dtypes (a mismatch would be resized or mis-fed silently)."""
        try:
            inputs = self.interpreter.get_signature_list()[SIGNATURE]["inputs"]
        except KeyError:
            raise BundleError(f"{model_path} has no {SIGNATURE!r} signature.") from None
        wanted = {"token_ids": ((self._batch,), np.dtype("int32"))}
        wanted.update({name: (shape, dtype) for name, shape, dtype in self._spec})
        if set(inputs) != set(wanted):
            raise BundleError(f"{model_path}'s step signature takes {sorted(inputs)}, but "
                              f"{MANIFEST_FILE} lists {sorted(wanted)}.")
        details = self._runner.get_input_details()
        for name, (shape, dtype) in wanted.items():
            got = details[name]
            if tuple(got["shape"]) != shape or np.dtype(got["dtype"]) != dtype:
                raise BundleError(f"{MANIFEST_FILE} says {name} is {np.dtype(dtype).name} "
                                  f"{list(shape)}, the model takes {np.dtype(got['dtype']).name} "
                                  f"{list(got['shape'])}.")

    @classmethod
    def load(cls, directory, num_threads=1):
        """Same as the constructor."""
        return cls(directory, num_threads=num_threads)

    # -- the state ---------------------------------------------------------------------
    def reset(self):
        """Zero every state (the start of a new text)."""
        self.states = {name: np.zeros(shape, dtype) for name, shape, dtype in self._spec}
        self.logits = None
        self.position = 0
        # the last ids read: what a Transformer re-reads when its positions run out
        self._history = collections.deque(maxlen=self.max_positions or 1)

    def step(self, token_id):
        """Read one token id; returns the next-token logits float32 ``(vocab_size,)``.

        Raises:
            ValueError: an id outside ``[0, vocab_size)``; a Transformer whose
                ``max_positions`` are used up (call :meth:`reset`, or use :meth:`feed`,
                which starts again from the recent tokens by itself).
        """
        if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)):
            raise ValueError(f"A token id must be an int, got {token_id!r}.")
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(f"Token id {token_id} is outside the vocabulary [0, "
                             f"{self.vocab_size}).")
        if self.max_positions is not None and self.position >= self.max_positions:
            raise ValueError(f"The model reads at most {self.max_positions} tokens; reset() "
                             "and feed the recent ones again.")
        out = self._runner(token_ids=np.full([self._batch], token_id, np.int32), **self.states)
        self.states = {name: out[name] for name in self.states}
        self.logits = out["logits"][0]
        self.position += 1
        self._history.append(token_id)
        return self.logits

    def feed(self, ids):
        """Read several ids; returns the logits after the last. A Transformer that runs out of
        positions starts again from the last ``max_positions // 2`` ids it read."""
        if isinstance(ids, (str, bytes)):
            raise TypeError("feed takes token ids; use feed_text for text, or "
                            "tokenizer.encode(text) for the ids of a word.")
        for token in list(ids):
            if self.max_positions is not None and self.position >= self.max_positions:
                keep = list(self._history)[-(self.max_positions // 2):]
                self.reset()
                for old in keep:
                    self.step(old)
            self.step(token)
        return self.logits

    def feed_text(self, text):
        """Read a prompt as the start of a line (``<eos>`` first, as training and the
        SavedModel do), keeping only its last ``max_prompt_tokens`` tokens."""
        limit = self.max_prompt_tokens
        if self.max_positions is not None:
            limit = min(limit or self.max_positions, self.max_positions)
        return self.feed(self.tokenizer.prompt_ids(text, max_tokens=limit))

    # -- answers -------------------------------------------------------------------------
    def top_k(self, k=5):
        """The ``k`` most likely next words after what was fed: ``[(word, probability)]``,
        most likely first; probabilities from the model's full softmax.

        Raises:
            ValueError: nothing fed yet; ``k`` outside ``[1, vocab_size - 2]``.
        """
        if self.logits is None:
            raise ValueError("Feed a prompt first (feed_text or feed).")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or \
                not 1 <= k <= self.vocab_size - len(self._never):
            raise ValueError(f"k must be between 1 and {self.vocab_size - len(self._never)}, "
                             f"got {k}.")
        probs = _softmax(self.logits)
        ranked = probs.copy()
        ranked[self._never] = -1.0
        best = np.argsort(-ranked, kind="stable")[:k]
        return [(self._words[i], float(probs[i])) for i in best]

    def next_word_distribution(self, text):
        """Probabilities float64 ``(vocab_size,)`` of the next token after ``text`` (read from
        a zero state)."""
        self.reset()
        return _softmax(self.feed_text(text))

    def suggest(self, text, k=None):
        """The ``k`` (default: the bundle's ``top_k``) most likely next words after the prompt
        ``text``, read from a zero state: ``[(word, probability)]``.

        Raises:
            TypeError: ``text`` is not a ``str``.
        """
        if not isinstance(text, str):
            raise TypeError(f"The prompt must be a str, got {type(text).__name__}.")
        k = self.manifest.get("top_k", 5) if k is None else k
        if self.word_search is not None:
            return self.suggest_words(text, k)
        self.reset()
        self.feed_text(text)
        return self.top_k(k)

    def _run(self, token_id, states):
        """One ``step`` call from ``states`` (not ``self.states``): ``(logits, states)``."""
        out = self._runner(token_ids=np.full([self._batch], token_id, np.int32), **states)
        return out["logits"][0], {name: np.array(out[name]) for name in states}

    def suggest_words(self, text, k=5):
        """Whole next words of a subword bundle: the search of the SavedModel's
        ``serving_default`` (:class:`zoo.word_search.WordBeamSearch`), in NumPy, one ``step``
        call per live hypothesis (the signature has batch 1; each carries its own states).

        ``P(word) = P(its pieces) * P(the next piece starts a word or ends the line)``, over
        one word-start piece then pieces that do not start a word; after each piece only the
        manifest's ``beam_width`` most likely partial words are extended, for at most
        ``max_pieces`` pieces; piecings with the same surface text are summed; padding,
        the unknown piece and the end of line are never proposed. The prompt is read without
        its trailing white space, from a zero state (``<eos>`` first; a Transformer reads at
        most ``max_positions - max_pieces`` ids of it).

        Returns:
            ``[(word, probability)]``, most likely first, the model's probabilities (not
            renormalised); fewer than ``k`` when the search found fewer words.

        Raises:
            TypeError: ``text`` is not a ``str``.
            ValueError: a bundle without the manifest's ``word_search`` entry; ``k`` < 1.
        """
        if not isinstance(text, str):
            raise TypeError(f"The prompt must be a str, got {type(text).__name__}.")
        search = self.word_search
        if search is None:
            raise ValueError("This bundle has no word_search entry in its manifest (a word "
                             "bundle, or one exported before it existed); use suggest.")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}.")
        beams, max_pieces = search["beam_width"], search["max_pieces"]
        surface, boundary = search["surface"], search["boundary"]
        limit = self.max_prompt_tokens
        if self.max_positions is not None:  # leave room for the word's pieces
            room = max(1, self.max_positions - max_pieces)
            limit = min(limit or room, room)
        self.reset()
        self.feed(self.tokenizer.prompt_ids(text.rstrip(_SPACE), max_tokens=limit))
        vocab = self.vocab_size
        logits = np.repeat(self.logits[None].astype(np.float64), beams, axis=0)
        states = [self.states] * beams
        scores = np.full(beams, -np.inf)
        scores[0] = 0.0  # one live beam
        texts = [""] * beams
        found = {}  # surface text -> summed probability, in the order first found
        for t in range(max_pieces + 1):
            log_probs = logits - logits.max(axis=1, keepdims=True)
            log_probs -= np.log(np.exp(log_probs).sum(axis=1, keepdims=True))
            if t > 0:  # the word ends here if the next piece is a boundary
                ends = log_probs[:, boundary]
                top = ends.max(axis=1)
                end = top + np.log(np.exp(ends - top[:, None]).sum(axis=1))
                for word, score in zip(texts, scores + end):
                    if word and np.isfinite(score):
                        found[word] = found.get(word, 0.0) + float(np.exp(score))
            if t == max_pieces:
                break
            allowed = search["start"] if t == 0 else search["continue"]
            total = np.where(allowed[None], scores[:, None] + log_probs, -np.inf).ravel()
            best = np.argsort(-total, kind="stable")[:beams]  # ties: the lower index
            scores = total[best]
            parents, tokens = best // vocab, best % vocab
            texts = [texts[p] + surface[v] for p, v in zip(parents, tokens)]
            rows = []
            for score, parent, token in zip(scores, parents, tokens):
                if np.isfinite(score):  # a dead hypothesis is never extended
                    rows.append(self._run(int(token), states[parent]))
                else:
                    rows.append((np.zeros(vocab), states[parent]))
            logits = np.stack([r[0] for r in rows]).astype(np.float64)
            states = [r[1] for r in rows]
        ranked = sorted(found.items(), key=lambda item: -item[1])  # stable: first found
        return [(word, p) for word, p in ranked if p > 0][:k]

    def unfinished_word(self, text):
        """``(context, prefix)`` of a prompt, as the SavedModel's ``complete`` cuts it: the
        prompt standardised as in training, then cut after its last white space (the
        characters words are split at, :data:`serving.tokenizer.WHITESPACE`); ``prefix``
        is ``""`` when it ends in white space.

        Raises:
            TypeError: ``text`` is not a ``str``.
        """
        if not isinstance(text, str):
            raise TypeError(f"The prompt must be a str, got {type(text).__name__}.")
        text = standardize_text(text, self.tokenizer.standardize)
        cut = max(text.rfind(c) for c in WHITESPACE) + 1
        return text[:cut], text[cut:]

    def complete(self, text, k=None):
        """The ``k`` (default: the bundle's ``top_k``) most likely completions of the prompt's
        unfinished last word (:meth:`unfinished_word`): the next-word distribution after the
        context, restricted to the vocabulary words that start with the prefix and
        renormalised over them; padding, ``[UNK]``, the end of line and ``<unk>`` are never
        completions. The answer of the SavedModel's ``complete`` signature.

        Returns:
            ``[(word, probability)]``, most likely first; fewer than ``k`` (or none: the
            answer for a prefix no vocabulary word starts with) when fewer words start with
            the prefix.

        Raises:
            TypeError: ``text`` is not a ``str``.
            ValueError: an empty prompt; a character-level or subword bundle (completion
                on the phone is for word bundles); ``k`` < 1.
        """
        if getattr(self.tokenizer, "split", None) != "whitespace":
            kind = self.manifest.get("tokenizer", {}).get("kind", "character")
            raise ValueError(f"complete needs a word-level bundle; this one's tokens are "
                             f"{kind} pieces (the SavedModel's complete signature completes "
                             "words for subword models).")
        k = self.manifest.get("top_k", 5) if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}.")
        if text == "":
            raise ValueError("The prompt is empty, so there is no word to complete; send at "
                             "least one character (suggest('') gives the first word of a line).")
        context, prefix = self.unfinished_word(text)
        probs = self.next_word_distribution(context)
        skip = {PAD_ID, OOV_ID, self.tokenizer.eos_id, self.tokenizer.unk_id}
        ids = [i for i, w in enumerate(self._words) if i not in skip and w.startswith(prefix)]
        total = probs[ids].sum()
        ranked = sorted(ids, key=lambda i: -probs[i])[:k]
        return [(self._words[i], float(probs[i] / total)) for i in ranked if probs[i] > 0]


def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _shown(word):
    """A token as printed: repr() for white space and other non-printing tokens."""
    return word if word.isprintable() and word.strip() == word and word else repr(word)


def build_parser():
    p = argparse.ArgumentParser(
        prog="nwp-litert",
        description="Next-word suggestions from a LiteRT bundle (nwp-export --litert), run with "
                    "ai_edge_litert and NumPy only (no TensorFlow).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("bundle", help="the bundle folder (the exported version folder)")
    p.add_argument("prompts", nargs="+", help="prompts ('' asks for the first word of a line)")
    p.add_argument("--k", type=_positive, default=None,
                   help="suggestions (default: the bundle's)")
    p.add_argument("--threads", type=_positive, default=1, help="interpreter threads")
    p.add_argument("--json", action="store_true", help="print one JSON object per prompt")
    p.add_argument("--complete", action="store_true",
                   help="complete each prompt's unfinished last word (the text after its last "
                        "space) instead of suggesting the next word")
    return p


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence what the LiteRT C++ runtime writes to file descriptor 2 while loading ("INFO:
    Created TensorFlow Lite XNNPACK delegate for CPU."); Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with _quiet_native_stderr():
            predictor = LiteRTPredictor.load(args.bundle, num_threads=args.threads)
            predictor.suggest("")  # the delegate is created at the first invocation
    except BundleError as err:
        print(f"nwp-litert: error: {err}", file=sys.stderr)
        return 2
    status = 0
    for prompt in args.prompts:
        start = time.perf_counter()
        try:
            words = (predictor.complete if args.complete else predictor.suggest)(prompt, args.k)
        except ValueError as err:  # one bad prompt: say so and go on with the others
            print(f"nwp-litert: error: {prompt!r}: {err}", file=sys.stderr)
            status = 2
            continue
        ms = (time.perf_counter() - start) * 1000
        if args.json:
            print(json.dumps({"prompt": prompt, "words": [w for w, _ in words],
                              "probabilities": [round(p, 6) for _, p in words],
                              "milliseconds": round(ms, 3)}))
        else:
            shown = ", ".join(f"{_shown(w)} ({p:.4f})" for w, p in words)
            print(f"{prompt!r} -> {shown}   [LiteRT {predictor.manifest['quantization']}, "
                  f"{predictor.position} step{'s' * (predictor.position != 1)}, {ms:.1f} ms]")
    return status


if __name__ == "__main__":
    sys.exit(main())
