"""TF Serving's gRPC API on the ``tensorflow-serving-api`` protos (grpcio).

Services (``tensorflow_serving/apis/prediction_service.proto`` and ``model_service.proto``
in github.com/tensorflow/serving):

* ``tensorflow.serving.PredictionService``: ``Predict``, ``GetModelMetadata`` (the
  ``signature_def`` field), and ``Classify`` / ``Regress`` / ``MultiInference`` on
  classification and regression signatures (:mod:`serving.inference`; a predict-only
  signature gets TF Serving's INVALID_ARGUMENT);
* ``tensorflow.serving.ModelService``: ``GetModelStatus``.

The server is ``grpc.aio``: calls are coroutines on one asyncio loop (``nwp-serve`` runs it on
the REST server's loop), so a call waiting for its batch holds no thread; a call that cannot be
batched runs in the loop's default executor.

Errors carry TensorFlow's status codes (NOT_FOUND for an unknown model or version,
INVALID_ARGUMENT for a bad request), messages truncated at 1024 characters as TF Serving
does; a request without a ``model_spec`` or with an empty name is INVALID_ARGUMENT.
Predict answers numbers in the TensorProto's typed fields (``float_val``, ...) as
``tensorflow_model_server`` does, or in ``tensor_content`` with its
``--enable_serialization_as_tensor_content``. Clients:
``prediction_service_pb2_grpc.PredictionServiceStub`` with requests built by
``tf.make_tensor_proto``.
"""

from __future__ import annotations

import asyncio
import math
import time

import grpc
import numpy as np
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.errors import ServingError, invalid
from serving.inference import check_multi_inference
from serving.limits import (DEFAULT_MAX_REQUEST_TOKENS, DEFAULT_MAX_TENSOR_BYTES,
                            HeavyGate, check_tensor_bytes, check_tokens, proto_cost,
                            tensor_bytes)
from serving.servable import DEFAULT_SIGNATURE, check_rows

_MAX_MESSAGE = 1024


async def _abort(context, err):
    message = err.message
    if len(message) > _MAX_MESSAGE:
        message = message[:_MAX_MESSAGE] + "...TRUNCATED"
    await context.abort(getattr(grpc.StatusCode, err.code), message)


# DataTypes (tensorflow/core/framework/types.proto) with a fast path below.
_DT_STRING = types_pb2.DT_STRING
_NUMERIC = {types_pb2.DT_FLOAT: np.float32, types_pb2.DT_DOUBLE: np.float64,
            types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64}
_DT_OF = {np.dtype(t): dt for dt, t in _NUMERIC.items()}


def to_ndarray(proto):
    """``tf.make_ndarray(proto)``, with fast paths for the common request tensors.

    A DT_STRING tensor listing every element in ``string_val``, and a float32/float64/
    int32/int64 tensor in ``tensor_content``, are read directly (object array of bytes; a
    little-endian copy); everything else (a single value filling the shape, ``float_val``
    fields, other dtypes) goes to ``tf.make_ndarray``.

    Raises:
        ValueError, TypeError: from ``tf.make_ndarray`` for malformed protos.
    """
    shape = [d.size for d in proto.tensor_shape.dim]
    size = math.prod(shape)
    if proto.dtype == _DT_STRING and not proto.tensor_content and len(proto.string_val) == size \
            and all(d >= 0 for d in shape):
        array = np.empty(size, dtype=object)
        array[:] = list(proto.string_val)
        return array.reshape(shape)
    numeric = _NUMERIC.get(proto.dtype)
    if numeric is not None and proto.tensor_content and all(d >= 0 for d in shape):
        dtype = np.dtype(numeric).newbyteorder("<")
        if len(proto.tensor_content) == size * dtype.itemsize:
            return np.frombuffer(proto.tensor_content, dtype=dtype).astype(numeric).reshape(shape)
    import tensorflow as tf

    return tf.make_ndarray(proto)


OFF_LOOP_BYTES = 1 << 20  # inputs this large (cost model) are converted off the event loop


def _to_arrays(protos):
    """``{alias: np.ndarray}`` of a request's input TensorProtos.

    Raises:
        ServingError: INVALID_ARGUMENT naming the input that cannot be read.
    """
    inputs = {}
    for alias, proto in sorted(protos.items()):
        try:
            inputs[alias] = to_ndarray(proto)
        except (ValueError, TypeError) as err:
            raise invalid(f"Cannot read input {alias}: {err}") from None
    return inputs


# TensorProto's typed field for each dtype, as TensorFlow's ``Tensor::AsProtoField`` fills it
# (tensorflow/core/framework/tensor.cc): what tensorflow_model_server answers by default.
_TYPED_FIELD = {np.dtype(np.float32): (types_pb2.DT_FLOAT, "float_val"),
                np.dtype(np.float64): (types_pb2.DT_DOUBLE, "double_val"),
                np.dtype(np.int32): (types_pb2.DT_INT32, "int_val"),
                np.dtype(np.uint8): (types_pb2.DT_UINT8, "int_val"),
                np.dtype(np.int16): (types_pb2.DT_INT16, "int_val"),
                np.dtype(np.int8): (types_pb2.DT_INT8, "int_val"),
                np.dtype(np.int64): (types_pb2.DT_INT64, "int64_val"),
                np.dtype(np.bool_): (types_pb2.DT_BOOL, "bool_val"),
                np.dtype(np.uint16): (types_pb2.DT_UINT16, "int_val"),
                np.dtype(np.uint32): (types_pb2.DT_UINT32, "uint32_val"),
                np.dtype(np.uint64): (types_pb2.DT_UINT64, "uint64_val")}


def to_tensor_proto(array, out, tensor_content=False):
    """Fill TensorProto ``out`` with ``array`` as tensorflow_model_server fills a Predict
    response.

    By default every element goes in its dtype's typed field (``float_val``, ``double_val``,
    ``int_val``, ``int64_val``, ``bool_val``, ``string_val``, ...), as TF Serving does unless
    started with ``--enable_serialization_as_tensor_content``. With ``tensor_content``,
    float32/float64/int32/int64 go in little-endian ``tensor_content`` (as
    ``tf.make_tensor_proto`` writes them); strings stay in ``string_val`` either way (a
    Python client's ``tf.make_ndarray`` cannot read strings from ``tensor_content``). Other
    dtypes go through ``tf.make_tensor_proto``.
    """
    array = np.asarray(array)
    if array.dtype == object and all(isinstance(v, bytes) for v in array.flat):
        out.dtype = _DT_STRING
        out.string_val.extend(array.ravel().tolist())
    elif tensor_content and array.dtype in _DT_OF and array.ndim:
        out.dtype = _DT_OF[array.dtype]
        out.tensor_content = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")
                                                  ).tobytes()
    elif not tensor_content and array.dtype in _TYPED_FIELD:
        out.dtype, field = _TYPED_FIELD[array.dtype]
        getattr(out, field).extend(array.ravel().tolist())
    else:
        import tensorflow as tf

        out.CopyFrom(tf.make_tensor_proto(array))
        return
    out.tensor_shape.SetInParent()
    for size in array.shape:
        out.tensor_shape.dim.add().size = size


def _check_spec(request):
    """INVALID_ARGUMENT for a request without a ``model_spec`` ("Missing ModelSpec", as TF
    Serving's predict_impl.cc, get_model_metadata_impl.cc, classification_service.cc,
    regression_service.cc and get_model_status_impl.cc answer)."""
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")


def _spec(model_spec):
    """``(name, version or None, label or None)`` of a ``ModelSpec``.

    Raises:
        ServingError: INVALID_ARGUMENT for an empty name ("ModelSpec has no name specified.",
            as TF Serving's ``ServerCore::ServableRequestFromModelSpec``).
    """
    if not model_spec.name:
        raise invalid("ModelSpec has no name specified.")
    version = model_spec.version.value if model_spec.HasField("version") else None
    label = model_spec.version_label if model_spec.WhichOneof("version_choice") == \
        "version_label" else None
    return model_spec.name, version, label


class _Calls:
    """The calls a servicer is running, and whether the server is draining (refusing new
    calls with UNAVAILABLE before it stops)."""

    def __init__(self):
        self.active = 0
        self.draining = False
        self.last_start = 0.0  # time.monotonic() of the newest call


def _model_name(request):
    """The model a request names (a MultiInferenceRequest: its first task's), or ``""``."""
    if hasattr(request, "model_spec"):
        return request.model_spec.name
    return request.tasks[0].model_spec.name if request.tasks else ""


def _measured(api):
    """Decorator: count and time a servicer coroutine in ``self.metrics`` (entrypoint GRPC);
    refuse it with UNAVAILABLE while the server drains."""
    def wrap(method):
        async def run(self, request, context):
            started, status = time.perf_counter(), "OK"
            self.calls.active += 1
            self.calls.last_start = time.monotonic()
            try:
                if self.calls.draining:
                    await context.abort(grpc.StatusCode.UNAVAILABLE,
                                        "The server is shutting down.")
                return await method(self, request, context)
            except asyncio.CancelledError:  # the client reset the call or its deadline passed
                remaining = context.time_remaining()
                status = ("DEADLINE_EXCEEDED" if remaining is not None and remaining <= 0
                          else "CANCELLED")
                raise
            except BaseException:
                code = context.code()
                status = code.name if code is not None else "UNKNOWN"
                raise
            finally:
                self.calls.active -= 1
                if self.metrics is not None:
                    name = _model_name(request)
                    self.metrics.observe(name if self.manager.known(name) else "", api, "GRPC",
                                         status, time.perf_counter() - started)
        return run
    return wrap


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """``PredictionService`` over a :class:`serving.servable.ModelManager`."""

    def __init__(self, manager, metrics=None, batcher=None, max_rows=1024, calls=None,
                 max_tensor_bytes=DEFAULT_MAX_TENSOR_BYTES,
                 max_tokens=DEFAULT_MAX_REQUEST_TOKENS, tensor_content=False, gate=None,
                 method_name_check=False):
        self.manager, self.metrics, self.batcher = manager, metrics, batcher
        self.method_name_check = method_name_check  # --enable_signature_method_name_check
        self.gate = gate or HeavyGate(0)  # --max_concurrent_heavy_requests, shared with REST
        self.tensor_content = tensor_content  # --enable_serialization_as_tensor_content
        self.max_rows = max_rows
        self.max_tensor_bytes, self.max_tokens = max_tensor_bytes, max_tokens
        self.calls = calls or _Calls()

    @_measured("predict")
    async def Predict(self, request, context):  # noqa: N802 (the proto's name)
        import tensorflow as tf

        try:
            _check_spec(request)
            servable = self.manager.get(*_spec(request.model_spec))
            signature_name = request.model_spec.signature_name
            key = signature_name or DEFAULT_SIGNATURE
            if key not in servable.signature_defs:  # gRPC's code and text (predict_util.cc)
                raise ServingError("FAILED_PRECONDITION",
                                   f'Serving signature key "{key}" not found.')
            sig = servable.signature_defs[key]
            unknown = sorted(set(request.inputs) - set(sig.inputs))
            if unknown:
                raise invalid(f"input tensor alias not found in signature: {unknown[0]}. "
                              f"Inputs expected to be in the set {{{','.join(sorted(sig.inputs))}}}.")
            costs = {}
            for i, (alias, proto) in enumerate(sorted(request.inputs.items())):
                want = tf.dtypes.as_dtype(sig.inputs[alias].dtype)
                if proto.dtype != want.as_datatype_enum:
                    try:
                        got = tf.dtypes.as_dtype(proto.dtype).name if proto.dtype else "invalid"
                    except TypeError:  # not a DataType TensorFlow knows
                        got = f"unknown DataType {proto.dtype}"
                    raise invalid(f"Expects arg[{i}] ({alias}) to be {want.name} but {got} is "
                                  "provided")
                # Before converting: a TensorProto with one value fills any shape it names,
                # so a few bytes could ask for terabytes. The cost is read from the proto.
                dims, costs[alias] = proto_cost(proto, alias)
                check_rows({alias: dims}, self.max_rows)
            check_tensor_bytes(costs, self.max_tensor_bytes)
            if sum(costs.values()) > OFF_LOOP_BYTES:  # large: convert in a worker thread
                inputs = await asyncio.get_running_loop().run_in_executor(
                    None, _to_arrays, request.inputs)
            else:
                inputs = _to_arrays(request.inputs)
            tokens = check_tokens(key, inputs, self.max_tokens)
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:  # spent while the request was read
                raise ServingError("DEADLINE_EXCEEDED", "Deadline exceeded before the model "
                                   "ran; give the call a longer deadline.")
            run = self.gate.run(tokens, lambda: (
                self.batcher.submit_async(servable, signature_name, inputs)
                if self.batcher is not None else asyncio.get_running_loop().run_in_executor(
                    None, servable.predict, signature_name, inputs)))
            try:  # the client's deadline bounds the run (grpc.aio also cancels at it)
                outputs = await asyncio.wait_for(run, remaining)
            except TimeoutError:
                raise ServingError("DEADLINE_EXCEEDED", "Deadline exceeded: the model did not "
                                   "answer within the call's deadline.") from None
            wanted = list(request.output_filter) or sorted(outputs)
            for alias in wanted:
                if alias not in outputs:
                    raise invalid(f"output tensor alias not found in signature: {alias}")
            if len(set(wanted)) != len(wanted):
                raise invalid("duplicate output tensor alias in output_filter")
        except ServingError as err:
            await _abort(context, err)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = key
        for alias in wanted:
            to_tensor_proto(outputs[alias], response.outputs[alias], self.tensor_content)
        return response

    @_measured("metadata")
    async def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            _check_spec(request)
            fields = list(request.metadata_field)
            if not fields:
                raise invalid("GetModelMetadataRequest must specify at least one "
                              "metadata_field")
            for field in fields:
                if field != "signature_def":
                    raise invalid(f"Metadata field {field} is not supported")
            servable = self.manager.get(*_spec(request.model_spec))
        except ServingError as err:
            await _abort(context, err)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(servable.signature_def_map())
        return response

    def _examples(self, request):
        """The serialized examples of a Classify/Regress/MultiInference request, within
        ``max_rows`` and ``max_tensor_bytes`` (INVALID_ARGUMENT otherwise)."""
        from serving.inference import examples_from_input

        serialized = examples_from_input(request.input)
        check_rows({"examples": (len(serialized),)}, self.max_rows)
        check_tensor_bytes({"examples": tensor_bytes(len(serialized), None,
                                                     sum(map(len, serialized)))},
                           self.max_tensor_bytes)
        return serialized

    @staticmethod
    def _spec_of(servable, signature_key, out):
        out.name = servable.name
        out.version.value = servable.version
        out.signature_name = signature_key

    @_measured("classify")
    async def Classify(self, request, context):  # noqa: N802
        from serving import inference

        try:
            _check_spec(request)
            servable = self.manager.get(*_spec(request.model_spec))
            signature = inference.classification_signature(
                servable, request.model_spec.signature_name, self.method_name_check)
            serialized = self._examples(request)
            classes, scores = await asyncio.get_running_loop().run_in_executor(
                None, inference.classify, servable, signature, serialized)
        except ServingError as err:
            await _abort(context, err)
        response = classification_pb2.ClassificationResponse()
        self._spec_of(servable, signature.key, response.model_spec)
        inference.fill_classification(response.result, classes, scores)
        return response

    @_measured("regress")
    async def Regress(self, request, context):  # noqa: N802
        from serving import inference

        try:
            _check_spec(request)
            servable = self.manager.get(*_spec(request.model_spec))
            signature = inference.regression_signature(
                servable, request.model_spec.signature_name, self.method_name_check)
            serialized = self._examples(request)
            values = await asyncio.get_running_loop().run_in_executor(
                None, inference.regress, servable, signature, serialized)
        except ServingError as err:
            await _abort(context, err)
        response = regression_pb2.RegressionResponse()
        self._spec_of(servable, signature.key, response.model_spec)
        inference.fill_regression(response.result, values)
        return response

    @_measured("multi_inference")
    async def MultiInference(self, request, context):  # noqa: N802
        """Every task (a classification or regression signature of one model) on the same
        examples; the answer has one result per task, in order (TF Serving's
        ``multi_inference.cc``: the tasks' signatures must share one input tensor, so a TF2
        SavedModel, whose ``tf.function`` signatures each have their own, is refused; here
        each signature runs on its own, with the same answers)."""
        from serving import inference

        try:
            servable = self.manager.get(*_spec(check_multi_inference(request)))
            tasks = []
            for task in request.tasks:
                name = task.model_spec.signature_name
                if task.method_name == inference.CLASSIFY_METHOD:
                    tasks.append((inference.classification_signature(
                        servable, name, self.method_name_check), True))
                else:
                    tasks.append((inference.regression_signature(
                        servable, name, self.method_name_check), False))
            inputs = {servable.signature_defs[s.key].inputs[s.input_alias].name
                      for s, _ in tasks}
            if len(inputs) != 1:
                raise invalid("Input tensor must be the same for all Signatures.")
            serialized = self._examples(request)

            def run_all():
                return [inference.classify(servable, s, serialized) if is_classify
                        else inference.regress(servable, s, serialized)
                        for s, is_classify in tasks]

            answers = await asyncio.get_running_loop().run_in_executor(None, run_all)
        except ServingError as err:
            await _abort(context, err)
        response = inference_pb2.MultiInferenceResponse()
        for (signature, is_classify), answer in zip(tasks, answers):
            result = response.results.add()
            self._spec_of(servable, signature.key, result.model_spec)
            if is_classify:
                inference.fill_classification(result.classification_result, *answer)
            else:
                inference.fill_regression(result.regression_result, answer)
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """``ModelService.GetModelStatus`` (the same data as REST ``GET /v1/models/<name>``)."""

    def __init__(self, manager, metrics=None, calls=None):
        self.manager, self.metrics = manager, metrics
        self.calls = calls or _Calls()

    @_measured("status")
    async def GetModelStatus(self, request, context):  # noqa: N802
        try:
            _check_spec(request)
            # TF Serving looks the name up as it is: an empty one is NOT_FOUND here
            # (get_model_status_impl.cc never calls ServableRequestFromModelSpec).
            model_spec = request.model_spec
            version = model_spec.version.value if model_spec.HasField("version") else None
            status = self.manager.status(model_spec.name, version)
        except ServingError as err:
            await _abort(context, err)
        status.pop("poll_error", None)  # REST only: the proto has no such field
        return json_format.ParseDict(status, get_model_status_pb2.GetModelStatusResponse())


class GrpcServer:
    """A ``grpc.aio.Server`` with both services, and a drain for graceful shutdown."""

    def __init__(self, server, calls):
        self.server, self.calls = server, calls
        self._stopped = False

    async def start(self):
        await self.server.start()

    async def stop(self, grace):
        """Refuse new calls with UNAVAILABLE ("The server is shutting down."), let the
        running ones finish (for up to ``grace`` seconds), then stop; idempotent.

        A call that grpcio accepted but had not yet handed to a handler when it stops is
        CANCELLED, so once no call runs the server waits until none has started for 0.1 s
        (clients told UNAVAILABLE back off), but no more than 1 s (clients that retry at
        once would never leave such a gap)."""
        if self._stopped:
            return
        self._stopped = True
        self.calls.draining = True
        deadline = time.monotonic() + grace
        while self.calls.active and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        quiet_until = min(deadline, time.monotonic() + 1.0)
        while time.monotonic() < quiet_until and (
                self.calls.active or time.monotonic() - self.calls.last_start < 0.1):
            await asyncio.sleep(0.01)
        await self.server.stop(0.5)


def parse_channel_arguments(text):
    """``--grpc_channel_arguments`` (``"key=value,key=value"``) as grpcio options: a value
    that reads as an int32 is passed as an int, any other as a string, as TF Serving's
    server.cc does.

    Raises:
        ValueError: an entry that is not ``key=value``.
    """
    options = []
    for entry in filter(None, text.split(",")):
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise ValueError(f"--grpc_channel_arguments entry {entry!r} is not key=value")
        try:
            number = int(value)
            options.append((key, number if -2**31 <= number < 2**31 else value))
        except ValueError:
            options.append((key, value))
    return options


def make_grpc_server(manager, host, port, metrics=None, batcher=None, max_rows=1024,
                     max_request_bytes=8 << 20, max_tensor_bytes=DEFAULT_MAX_TENSOR_BYTES,
                     max_tokens=DEFAULT_MAX_REQUEST_TOKENS, tensor_content=False,
                     socket_path=None, channel_arguments=(), gate=None,
                     method_name_check=False):
    """A :class:`GrpcServer` bound to ``host:port`` (none if ``port`` is 0) and to the Unix
    socket ``socket_path`` (if given), not yet started; call it from the event loop that
    will run it, then ``await server.start()``.

    Limits (the REST server's flags): messages over ``max_request_bytes`` get
    RESOURCE_EXHAUSTED from grpcio; inputs over ``max_tensor_bytes`` once converted, or
    over ``max_tokens`` of model work, get INVALID_ARGUMENT (see :mod:`serving.limits`).
    ``tensor_content``: numeric outputs in ``tensor_content`` instead of the typed fields
    (``--enable_serialization_as_tensor_content``). ``channel_arguments``: extra grpcio
    server options (``--grpc_channel_arguments``, see :func:`parse_channel_arguments`).
    ``gate``: the :class:`serving.limits.HeavyGate` shared with REST
    (``--max_concurrent_heavy_requests``; default: no limit). ``method_name_check``:
    Classify/Regress/MultiInference also require the signature's ``method_name``
    (``--enable_signature_method_name_check``).

    Raises:
        OSError: an address cannot be bound (in use, also by another gRPC server: port
            sharing, grpcio's default, is off).
    """
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_request_bytes),
                                      ("grpc.so_reuseport", 0), *channel_arguments])
    calls = _Calls()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(manager, metrics, batcher, max_rows, calls, max_tensor_bytes,
                          max_tokens, tensor_content, gate, method_name_check), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(manager, metrics, calls), server)
    addresses = ([f"{host}:{port}"] if port else []) + (
        [f"unix:{socket_path}"] if socket_path else [])
    for address in addresses:
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as err:
            raise OSError(f"cannot bind gRPC to {address}: {err}") from None
        if bound == 0:
            raise OSError(f"cannot bind gRPC to {address}")
    return GrpcServer(server, calls)
