"""LiteRT (TFLite) export: a trained model's one-step call as a builtins-only ``.tflite``.

A phone keyboard reads a prompt one token at a time and keeps the model's state between key
presses, so the mobile model is the model's **one-step call**, not the full-sequence graph
(whose ``keras.layers.RNN`` loop becomes TensorList ops that need Flex, which LiteRT's
Python and mobile runtimes do not link). The ``.tflite`` has one signature::

    step
      inputs:  token_ids  int32   [B]                 the token read at this step
               <state>    float32/int32, fixed shape  one per state, see below
      outputs: logits     float32 [B, vocab_size]     next-token logits after that token
               <state>    the same names, shapes and dtypes: feed them back next step

with ``B = 1`` by default and the states of ``LanguageModel.fixed_state_spec``: ``h_i``
(and ``c_i`` for LSTM/CIFG) ``[B, units]`` per layer; with attention also ``memory [B, K,
units]`` and ``count [B]`` int32 (a sliding window of the last K outputs); for the
Transformer ``key_i``/``value_i`` ``[B, heads, max_length, head_dim]`` and ``position
[B]`` int32. All states start at zero. Every shape is static, so an app never resizes a
tensor.

The converter is given only ``TFLITE_BUILTINS``: no Flex (SELECT_TF_OPS), no custom op. The
weights are frozen through ``keras.export.ExportArchive`` and ``from_saved_model`` (a
``tf.function`` closing over Keras 3 variables would "convert" to a weightless file with
VAR_HANDLE ops that returns NaN), and the result is checked for that.

Quantizations (``QUANTIZATIONS``), all from the TFLite post-training quantization guide
(https://ai.google.dev/edge/litert/models/post_training_quantization):

* ``float32``: no quantization.
* ``float16``: weights stored as float16, computed in float32 on CPU.
* ``dynamic-int8`` (default): weights int8, activations quantized on the fly per step.
* ``int8``: full integer (weights and activations int8, float32 inputs and outputs), with
  scales calibrated on a representative token stream from the training text. A recurrent
  state such as the LSTM cell state ``c_t`` then has one int8 scale for values that range
  over hundreds, which can ruin the model; so the int8 file is measured against float32 on
  held-out tokens of that stream and refused (``QuantizationError``, with the numbers)
  when its perplexity is more than ``INT8_MAX_PERPLEXITY_RATIO`` times the float one.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings

import numpy as np

from serving.litert import (  # noqa: E402
    FORMAT_VERSION, MANIFEST_FILE, SIGNATURE, TFLITE_FILE, TOKENIZER_SIGNATURE,
    TOKENIZER_TFLITE_FILE)

QUANTIZATIONS = ("float32", "float16", "dynamic-int8", "int8")
DEFAULT_QUANTIZATION = "dynamic-int8"
INT8_MAX_PERPLEXITY_RATIO = 1.10


class ConversionError(ValueError):
    """The model cannot become a builtins-only ``.tflite`` (the message names the ops)."""


class QuantizationError(ValueError):
    """A quantized file is too far from the float one (the message gives the numbers)."""


def _step_archive(model, batch_size, window, directory):
    """Write the one-step SavedModel (signature ``step``) that the converter reads; returns
    the state spec (``model.fixed_state_spec``)."""
    import keras
    import tensorflow as tf

    spec = model.fixed_state_spec(batch_size, window)

    def step(token_ids, *states):
        logits, new_states = model.fixed_step(token_ids, list(states))
        out = {"logits": tf.cast(logits, tf.float32)}
        out.update({name: tf.cast(s, dtype) for (name, _, dtype), s in zip(spec, new_states)})
        return out

    signature = [tf.TensorSpec([batch_size], tf.int32, name="token_ids")]
    signature += [tf.TensorSpec(shape, dtype, name=name) for name, shape, dtype in spec]
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, step, input_signature=signature)
    archive.write_out(directory, verbose=False)
    return spec


def _unsupported_ops(message):
    """Op names in a converter error such as ``'tf.StringSplitV2' op is neither a custom op
    nor a flex op``."""
    return sorted(set(re.findall(r"'(?:tf|tfl|tf_text)\.([A-Za-z0-9_]+)' op", message)))


def max_positions(spec):
    """The positions a fixed-state step can read before it must start again: a Transformer's
    ``max_length`` (the slots of its ``key_0`` cache, beside a ``position`` state), else None
    (recurrent states never run out)."""
    shapes = {name: shape for name, shape, _ in spec}
    if "position" in shapes and "key_0" in shapes:
        return int(shapes["key_0"][2])
    return None


def representative_steps(model, ids, batch_size=1, window=256):
    """Inputs of the ``step`` signature along a token stream, states fed back (as the app
    will see them; a Transformer starts again from zero states every ``max_length`` tokens),
    for int8 calibration: a list of ``{name: np.ndarray}``."""
    import tensorflow as tf

    spec = model.fixed_state_spec(batch_size, window)
    limit = max_positions(spec)
    zeros = [tf.zeros(shape, dtype) for _, shape, dtype in spec]
    states = zeros
    steps = []
    step = tf.function(model.fixed_step)
    for t, token in enumerate(ids):
        if limit is not None and t % limit == 0:
            states = zeros
        token_ids = tf.fill([batch_size], tf.constant(int(token), tf.int32))
        steps.append({"token_ids": token_ids.numpy(),
                      **{name: s.numpy() for (name, _, _), s in zip(spec, states)}})
        _, states = step(token_ids, states)
    return steps


def convert_step(model, quantization=DEFAULT_QUANTIZATION, representative_ids=None,
                 batch_size=1, window=256):
    """Convert ``model``'s one-step call to a builtins-only ``.tflite``.

    Args:
        model: a built ``zoo.models.LanguageModel`` (stateless).
        quantization: one of :data:`QUANTIZATIONS`.
        representative_ids: int ``(tokens,)`` stream for ``int8`` calibration (a few hundred
            tokens of training text); required for ``int8`` only.
        batch_size: the fixed batch of the signature (1 for a keyboard).
        window: attention window K (recurrent models with attention).

    Returns:
        ``(tflite_bytes, state_spec)``.

    Raises:
        ValueError: unknown quantization; ``int8`` without ``representative_ids``.
        ConversionError: an op has no TFLite builtin (the message names it), or the file
            came out without its weights.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"Unknown quantization {quantization!r}; choose one of "
                         f"{', '.join(QUANTIZATIONS)}.")
    if quantization == "int8" and (representative_ids is None or len(representative_ids) < 8):
        raise ValueError("int8 quantization needs a representative token stream (at least 8 "
                         "tokens of training text) to calibrate the activation scales.")
    with tempfile.TemporaryDirectory(prefix="nwp-litert-") as tmp:
        spec = _step_archive(model, batch_size, window, tmp)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=[SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = False
        if quantization != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            steps = representative_steps(model, representative_ids, batch_size, window)
            converter.representative_dataset = lambda: iter(steps)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            with warnings.catch_warnings():  # int8 calibration runs TF's deprecated Interpreter
                warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
                content = converter.convert()
        except Exception as err:  # noqa: BLE001  the converter raises several types
            ops = _unsupported_ops(str(err))
            if not ops:
                raise
            raise ConversionError(
                f"{type(model).__name__} cannot be converted with TFLite builtin ops only: "
                f"{', '.join(ops)} {'has' if len(ops) == 1 else 'have'} no builtin kernel "
                "(they would need Flex or a custom op, which a phone app would have to "
                "link).") from None
    if quantization == "dynamic-int8":
        content = share_tied_table(content)
    check_builtins_only(content, min_bytes=_weight_bytes(model, quantization))
    return content, spec


def share_tied_table(content):
    """Store a tied embedding table once in a dynamic-range (``dynamic-int8``) file.

    With tied input and output embeddings the converter quantizes the one table twice: per
    tensor for the input lookup (GATHER, then DEQUANTIZE of the gathered row) and per output
    row for the output layer (FULLY_CONNECTED), so the file holds two int8 copies (for the
    ``keyboard`` preset, 2 x 0.96 MB of its 2.5 MB). This rewrites the lookup to DEQUANTIZE the
    output layer's per-row int8 table (a constant input: LiteRT computes it once, at
    allocation) and GATHER from that, and drops the second copy. The input embedding then
    uses exactly the output layer's weights, with their finer per-row scales.

    Returns ``content`` unchanged when there is no such pair (untied models, other
    quantizations), else the rewritten flatbuffer bytes.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    ops = schema.BuiltinOperator

    def kind(op):
        code = model.operatorCodes[op.opcodeIndex]
        return max(code.builtinCode, code.deprecatedBuiltinCode)

    def constant(graph, index):
        data = model.buffers[graph.tensors[index].buffer].data
        return data is not None and len(data) > 0

    changed = False
    for graph in model.subgraphs:
        for gather in [op for op in graph.operators if kind(op) == ops.GATHER]:
            table = graph.tensors[gather.inputs[0]]
            if not constant(graph, gather.inputs[0]) or table.type != schema.TensorType.INT8:
                continue
            dequantize = [op for op in graph.operators if kind(op) == ops.DEQUANTIZE
                          and list(op.inputs) == [gather.outputs[0]]]
            twins = [op.inputs[1] for op in graph.operators if kind(op) == ops.FULLY_CONNECTED
                     and constant(graph, op.inputs[1])
                     and graph.tensors[op.inputs[1]].type == schema.TensorType.INT8
                     and list(graph.tensors[op.inputs[1]].shape) == list(table.shape)]
            if len(dequantize) != 1 or len(twins) != 1:
                continue
            rows = _dequantized(model, graph.tensors[twins[0]])
            if not np.allclose(rows, _dequantized(model, table),
                               atol=2 * float(np.max(table.quantization.scale))):
                continue  # not the same table
            dequantize = dequantize[0]
            full = schema.TensorT()
            full.shape = list(table.shape)
            full.type = schema.TensorType.FLOAT32
            full.name = b"tied_table_dequantized"
            full.buffer = 0  # computed at run time
            graph.tensors.append(full)
            row = dequantize.outputs[0]
            dequantize.inputs, dequantize.outputs = [twins[0]], [len(graph.tensors) - 1]
            gather.inputs[0], gather.outputs = len(graph.tensors) - 1, [row]
            graph.operators.remove(dequantize)
            graph.operators.insert(graph.operators.index(gather), dequantize)
            model.buffers[table.buffer].data = None  # the per-tensor copy is gone
            table.shape = [1]
            changed = True
    if not changed:
        return content
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _dequantized(model, tensor):
    """Float values of a constant int8 tensor (per-tensor or per-axis scales)."""
    values = np.frombuffer(bytes(model.buffers[tensor.buffer].data), np.int8)
    values = values.reshape(list(tensor.shape)).astype(np.float64)
    q = tensor.quantization
    scale = np.asarray(q.scale, np.float64)
    zero = np.asarray(q.zeroPoint, np.float64)
    if scale.size > 1:
        shape = [1] * values.ndim
        shape[q.quantizedDimension] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero) * scale


def _weight_bytes(model, quantization):
    """The least a file holding ``model``'s weights can weigh: 1, 2 or 4 bytes each, less 10%
    (the converter drops weights it can fold away, such as a zero bias added to a product);
    a file without its weights (the VAR_HANDLE trap) is a few kilobytes."""
    per = {"float32": 4, "float16": 2}.get(quantization, 1)
    return int(0.9 * model.count_params() * per)


def ops_of(content, custom_ops=False):
    """Names of the ops in a ``.tflite`` (every subgraph), via the LiteRT interpreter;
    ``custom_ops``: the file has tensorflow-text custom ops (registered for the look)."""
    from ai_edge_litert.interpreter import Interpreter, InterpreterWithCustomOps

    if custom_ops:
        import tensorflow_text

        interpreter = InterpreterWithCustomOps(
            model_content=content,
            custom_op_registerers=tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)
    else:
        interpreter = Interpreter(model_content=content)
    return sorted({op["op_name"] for op in interpreter._get_ops_details()})


def check_builtins_only(content, min_bytes=0):
    """Raise ``ConversionError`` unless ``content`` has only builtin ops, no VAR_HANDLE /
    READ_VARIABLE (weights left as variables: such a file runs and returns NaN) and at least
    ``min_bytes`` bytes (the weights)."""
    ops = ops_of(content)
    bad = [op for op in ops if op.startswith("Flex") or op in (
        "CUSTOM", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE", "DELEGATE")]
    if bad:
        raise ConversionError(f"The converted file has non-builtin or variable ops {bad}; "
                              "it would not run (or not run correctly) on a phone.")
    if len(content) < min_bytes:
        raise ConversionError(f"The converted file has {len(content):,} bytes, less than its "
                              f"{min_bytes:,} bytes of weights: the weights were not frozen.")
    return ops


def _run_stream(content, spec, ids):
    """Per-token NLL (nats) and top-5 ids of a ``.tflite`` step over ``ids`` (batch 1; a
    Transformer starts again from zero states every ``max_length`` tokens)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=content, num_threads=1).get_signature_runner(SIGNATURE)
    limit = max_positions(spec)
    nll, top5 = [], []
    for t, (token, target) in enumerate(zip(ids[:-1], ids[1:])):
        if t == 0 or (limit is not None and t % limit == 0):
            states = {name: np.zeros(shape, dtype) for name, shape, dtype in spec}
        out = runner(token_ids=np.array([token], np.int32), **states)
        states = {name: out[name] for name in states}
        logits = out["logits"][0].astype(np.float64)
        log_z = logits.max() + math.log(np.exp(logits - logits.max()).sum())
        nll.append(log_z - logits[target])
        top5.append(set(np.argsort(-logits)[:5]))
    return np.array(nll), top5


def compare_quantized(float_content, quant_content, spec, ids):
    """Perplexity of both files over ``ids`` (states fed back) and mean top-5 overlap."""
    nll_f, top_f = _run_stream(float_content, spec, ids)
    nll_q, top_q = _run_stream(quant_content, spec, ids)
    overlap = float(np.mean([len(a & b) / 5 for a, b in zip(top_f, top_q)]))
    return float(np.exp(nll_f.mean())), float(np.exp(nll_q.mean())), overlap


def convert_tokenizer(front_end):
    """A subword front end's ``tokenize`` graph (:class:`zoo.front_ends.TokenizerModule`) as
    a ``.tflite`` with tensorflow-text's TFLite custom ops.

    Signature ``tokenize``: ``text`` string ``[N]`` -> ``ids`` int32 ``[total]`` and
    ``row_splits`` int32 ``[N + 1]``. Converted with ``TFLITE_BUILTINS`` and
    ``allow_custom_ops`` (the tensorflow-text ops ``FastWordpieceTokenizeWithOffsets``,
    ``TFText>WhitespaceTokenizeWithOffsetsV2``, ``TFText>FastSentencepieceTokenize``). It runs
    in ``ai_edge_litert.interpreter.InterpreterWithCustomOps(custom_op_registerers=
    tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS)``; an app links tensorflow-text's
    TFLite op registrar (https://www.tensorflow.org/text/guide/text_tf_lite).

    Returns:
        ``(content, ops)``: the flatbuffer bytes and its op names.

    Raises:
        ConversionError: the converter refused the graph (the message names the ops).
    """
    import tensorflow as tf

    from zoo.front_ends import TokenizerModule

    module = TokenizerModule(front_end)
    with tempfile.TemporaryDirectory() as tmp:
        tf.saved_model.save(module, tmp, signatures={TOKENIZER_SIGNATURE: module.tokenize})
        converter = tf.lite.TFLiteConverter.from_saved_model(
            tmp, signature_keys=[TOKENIZER_SIGNATURE])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.allow_custom_ops = True
        try:
            content = converter.convert()
        except Exception as err:  # noqa: BLE001  the converter raises several types
            raise ConversionError(f"The {front_end.kind} tokenizer does not convert to "
                                  f"LiteRT: {err}") from None
    return content, ops_of(content, custom_ops=True)


def word_search_config(predictor):
    """The manifest's ``word_search`` entry: what the runner needs to answer a subword
    bundle's ``suggest`` with whole next words, by the search of the SavedModel's
    ``serving_default`` (:class:`zoo.word_search.WordBeamSearch`); None for a word-level
    predictor (its ids already are words).

    Returns:
        dict: ``beam_width`` and ``max_pieces`` (the predictor's search), ``word_start``
        (``list[bool]`` by id: the front end's ``word_start_mask()``), ``piece_text``
        (``list[str]`` by id: the front end's ``piece_text``, without markers), ``pad_id``,
        ``unk_id`` and ``eos_id`` (None where the front end has none).
    """
    search = getattr(predictor, "word_search", None)
    if search is None:
        return None
    front_end = predictor.front_end
    vocab = len(front_end.pieces)

    def some_id(value):
        return None if value is None else int(value)

    return {"beam_width": int(search.beam_width), "max_pieces": int(search.max_pieces),
            "word_start": [bool(b) for b in np.asarray(front_end.word_start_mask(), bool)],
            "piece_text": [front_end.piece_text(i) for i in range(vocab)],
            "pad_id": some_id(front_end.pad_id), "unk_id": some_id(front_end.unk_id),
            "eos_id": some_id(front_end.eos_id)}


def write_bundle(predictor, directory, quantization=DEFAULT_QUANTIZATION,
                 representative_lines=None, window=256, max_prompt_tokens=None, top_k=5):
    """Write a LiteRT bundle into ``directory`` (created if missing; may hold a SavedModel).

    Files: ``model.tflite`` (signature ``step``, see the module docstring), the tokenizer
    and ``litert.json`` (the manifest: signature tensors, state names, quantization, limits,
    ``tokenizer``, which says which tokenizer the bundle has, and for a subword front end
    ``word_search``, :func:`word_search_config`). The tokenizer of a
    ``word`` front end is ``tokenizer.json`` and its vocabulary (:mod:`serving.tokenizer`,
    TF-free); of a subword front end ``tokenizer.tflite`` (:func:`convert_tokenizer`) with
    the front end's files (``front_end.json``, ...).

    Args:
        predictor: a ``zoo.NextWordPredictor``.
        directory: the bundle folder; existing bundle files are an error.
        quantization: one of :data:`QUANTIZATIONS`.
        representative_lines: training lines for ``int8`` (calibration and its check).
        window: attention window K; max_prompt_tokens: tokens of a prompt the runner reads
            (as the SavedModel's ``serving_default``; None: 256, or a Transformer's
            ``max_length`` if smaller); top_k: suggestions by default.

    Returns:
        The manifest dict.

    Raises:
        FileExistsError: the folder already has a ``model.tflite`` or ``litert.json``.
        ValueError, ConversionError, QuantizationError: see :func:`convert_step`; int8
            without lines; an int8 file too far from float32.
    """
    from serving import tokenizer as tokenizer_lib
    from serving.export import prompt_token_limit

    for name in (TFLITE_FILE, MANIFEST_FILE):
        if os.path.exists(os.path.join(directory, name)):
            raise FileExistsError(f"{os.path.join(directory, name)} exists; bundles are never "
                                  "overwritten.")
    model, vectorizer = predictor.model, predictor.vectorizer
    max_prompt_tokens = prompt_token_limit(model, max_prompt_tokens)
    check = None
    if quantization == "int8":
        if not representative_lines:
            raise ValueError("int8 quantization needs representative training text "
                             "(--representative_text FILE, or calibration.txt in the run).")
        ids = vectorizer.encode_lines(list(representative_lines))[:600]
        if ids.size < 60:
            raise ValueError(f"The representative text has {ids.size} tokens; int8 needs at "
                             "least 60 (300 to 600 is better).")
        calibrate, held_out = ids[: ids.size // 2], ids[ids.size // 2:]
        content, spec = convert_step(model, "int8", calibrate, window=window)
        reference, _ = convert_step(model, "float32", window=window)
        ppl_f, ppl_q, overlap = compare_quantized(reference, content, spec, held_out)
        check = {"held_out_tokens": int(held_out.size), "float32_perplexity": ppl_f,
                 "int8_perplexity": ppl_q, "top5_overlap": overlap}
        if not ppl_q <= INT8_MAX_PERPLEXITY_RATIO * ppl_f:
            raise QuantizationError(
                f"Full-integer int8 does not survive for this model: on {held_out.size} "
                f"held-out tokens its perplexity is {ppl_q:.1f} against {ppl_f:.1f} in float32 "
                f"(top-5 overlap {overlap:.2f}); a recurrent state quantized with one int8 "
                "scale loses its precision. Use dynamic-int8 (int8 weights, float states) "
                "instead.")
    else:
        content, spec = convert_step(model, quantization, window=window)
    os.makedirs(directory, exist_ok=True)
    if predictor.front_end.kind == "word":  # the TF-free Python tokenizer
        tokenizer_lib.write(vectorizer.vectorizer if hasattr(vectorizer, "vectorizer")
                            else vectorizer, directory)
        tokenizer = {"kind": "word", "format": "json", "file": tokenizer_lib.CONFIG_FILE}
    else:  # the front end's own ops, as tensorflow-text TFLite custom ops
        tokenizer_content, tokenizer_ops = convert_tokenizer(predictor.front_end)
        with open(os.path.join(directory, TOKENIZER_TFLITE_FILE), "wb") as f:
            f.write(tokenizer_content)
        predictor.front_end.save(directory)  # pieces, for the words of the suggestions
        tokenizer = {"kind": predictor.front_end.kind, "format": "tflite",
                     "file": TOKENIZER_TFLITE_FILE, "signature": TOKENIZER_SIGNATURE,
                     "ops": tokenizer_ops,
                     "custom_op_registerers":
                         "tensorflow_text.tflite_registrar.SELECT_TFTEXT_OPS",
                     "eos_id": int(predictor.front_end.eos_id),
                     "surface": predictor.front_end.surface_table(),
                     "names": predictor.front_end.piece_names()}
    word_search = word_search_config(predictor)
    with open(os.path.join(directory, TFLITE_FILE), "wb") as f:
        f.write(content)
    config = model.get_config()
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_file": TFLITE_FILE,
        "signature": SIGNATURE,
        "inputs": [{"name": "token_ids", "shape": [spec[0][1][0]], "dtype": "int32"}]
        + [{"name": n, "shape": list(s), "dtype": d} for n, s, d in spec],
        "outputs": [{"name": "logits", "shape": [spec[0][1][0], model.vocab_size],
                     "dtype": "float32"}]
        + [{"name": n, "shape": list(s), "dtype": d} for n, s, d in spec],
        "states": [n for n, _, _ in spec],
        "quantization": quantization,
        "bytes": len(content),
        "ops": ops_of(content),
        "model_class": type(model).__name__,
        "model_config": {k: v for k, v in config.items() if isinstance(v, (int, float, str,
                                                                            bool, type(None)))},
        "parameters": int(model.count_params()),
        "vocab_size": int(model.vocab_size),
        "max_prompt_tokens": int(max_prompt_tokens),
        "max_positions": getattr(model, "max_length", None),  # a Transformer's
        "attention_window": (int(window) if getattr(model, "attention_type", None) else None),
        "top_k": int(top_k),
        "never_suggest_ids": [tokenizer_lib.PAD_ID, tokenizer_lib.OOV_ID],
        "tokenizer": tokenizer,
        "int8_check": check,
    }
    if word_search is not None:
        manifest["word_search"] = word_search
    tmp = os.path.join(directory, MANIFEST_FILE + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, os.path.join(directory, MANIFEST_FILE))  # the manifest comes last
    return manifest
