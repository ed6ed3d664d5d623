"""``nwp-serve``: the server process. Flags named and parsed like
``tensorflow_model_server``'s (``tensorflow_serving/model_servers/main.cc``,
github.com/tensorflow/serving), start-up (models loaded before any port opens), both APIs
(:mod:`serving.rest` and :mod:`serving.grpc_server`, peers that share one
:class:`serving.servable.ModelManager`, one event loop, one metrics registry and one
:class:`serving.limits.HeavyGate`) and shutdown (gRPC drained while REST finishes)::

    nwp-serve --port=8500 --rest_api_port=8501 --model_name=nwp \
        --model_base_path=saved_models/nwp

Every ``tensorflow_model_server`` flag is accepted in its syntax (``--flag=value``,
booleans bare or ``=true``/``=false``), so the two can be swapped; those with no effect here
(:data:`NO_EFFECT`) are named in one line each at start, those that would make gRPC
encrypted (:data:`REFUSED`) stop it. The server binds 127.0.0.1 unless ``--host`` says
otherwise, and loads the aspired versions before it starts listening, so an open port means
a ready model.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys

from aiohttp import web

from serving import metrics as metrics_module
from serving.limits import DEFAULT_MAX_REQUEST_TOKENS, DEFAULT_MAX_TENSOR_BYTES, HeavyGate
from serving.rest import make_app
from serving.servable import (ModelManager, Servable, check_poll_seconds,
                              read_model_config_file)


def tf_bool(text):
    """A boolean flag's value as tensorflow_model_server reads it (TensorFlow's
    ``command_line_flags.cc``, ``ParseBoolFlag``): ``true``/``false`` in any case, ``1``/``0``;
    the bare flag means true."""
    if text.lower() == "true" or text == "1":
        return True
    if text.lower() == "false" or text == "0":
        return False
    raise argparse.ArgumentTypeError(f"expected true, false, 1 or 0, got {text!r}")


def _bool_flag(parser, name, help, default=False):
    """``--name``, ``--name=true``, ``--name=false``: TF Serving's boolean flag syntax."""
    parser.add_argument(f"--{name}", type=tf_bool, nargs="?", const=True, default=default,
                        metavar="true|false", help=help)


# tensorflow_model_server flags (tensorflow_serving/model_servers/main.cc) that nwp-serve
# accepts but does not act on: (type, why). Given one, the server says so in one line at
# start and serves on; a flag no one knows still fails at start.
_NO_RETRY = "a version that failed to load is tried again only once its folder changes"
NO_EFFECT = {
    "rest_api_num_threads": (int, "REST requests are served on one asyncio event loop"),
    "allow_version_labels_for_unavailable_models": (
        tf_bool, "a version label must point at an available version here"),
    "enable_per_model_batching_parameters": (
        tf_bool, "one --batching_parameters_file applies to every model"),
    "num_load_threads": (int, "versions load one at a time in the polling thread"),
    "num_unload_threads": (int, "versions unload in the polling thread"),
    "max_num_load_retries": (int, _NO_RETRY),
    "load_retry_interval_micros": (int, _NO_RETRY),
    "flush_filesystem_caches": (tf_bool, "models are read from local files with no cache to "
                                         "flush"),
    "tensorflow_session_config_file": (
        str, "TensorFlow 2 runs no Session here; use --tensorflow_intra_op_parallelism and "
             "--tensorflow_inter_op_parallelism"),
    "platform_config_file": (str, "only the TensorFlow (SavedModel) platform is served"),
    "per_process_gpu_memory_fraction": (float, "TensorFlow's default GPU memory policy "
                                               "applies"),
    "saved_model_tags": (str, "the MetaGraph tagged 'serve' is always loaded"),
    "grpc_max_threads": (int, "gRPC runs on grpc.aio's event loop, not a thread pool"),
    "enable_model_warmup": (tf_bool, "warmup records (assets.extra/tf_serving_warmup_requests) "
                                     "are not replayed"),
    "num_request_iterations_for_warmup": (int, "warmup records are not replayed"),
    "monitoring_config_file": (str, "Prometheus metrics are always served at "
                                    "/monitoring/prometheus/metrics"),
    "remove_unused_fields_from_bundle_metagraph": (
        tf_bool, "only the signature_def map of the MetaGraph is kept"),
    "num_tflite_pools": (int, "one LiteRT interpreter per version answers serving_default "
                              "(--prefer_tflite_model), one prompt at a time"),
    "num_tflite_interpreters_per_pool": (int, "one LiteRT interpreter per version answers "
                                              "serving_default (--prefer_tflite_model)"),
    "xla_cpu_compilation_enabled": (tf_bool, "XLA JIT is left at TensorFlow's default"),
    "xla_gpu_compilation_enabled": (tf_bool, "XLA JIT is left at TensorFlow's default"),
    "enable_profiler": (tf_bool, "there is no profiler service"),
    "thread_pool_factory_config_file": (
        str, "thread pools are sized by --tensorflow_intra_op_parallelism and "
             "--tensorflow_inter_op_parallelism"),
    "mixed_precision": (str, "models run in the precision they were exported in"),
    "skip_initialize_tpu": (tf_bool, "there is no TPU support"),
    "enable_grpc_healthcheck_service": (
        tf_bool, "the grpc.health.v1 service needs grpcio-health-checking, not a dependency; "
                 "probe GET /v1/models/<name> or ModelService.GetModelStatus instead"),
}
# Flags that would make TF Serving encrypt gRPC: refused when set, since serving plaintext
# to clients that expect TLS or ALTS would be a silent downgrade.
REFUSED = {"use_alts_credentials": tf_bool, "ssl_config_file": str}


def build_parser():
    """nwp-serve's flag parser: tensorflow_model_server's flags by their names (``--port``,
    ``--rest_api_port``, ``--model_config_file``, ...; README's flag table says what each
    does here), plus this server's own limits."""
    p = argparse.ArgumentParser(
        prog="nwp-serve", usage="nwp-serve [--flag=value ...] (nwp-serve --help lists them)",
        description="Serve SavedModels over TensorFlow Serving's REST and gRPC APIs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        allow_abbrev=False)  # as tensorflow_model_server: --enable_b is not --enable_batching
    p.add_argument("--rest_api_port", type=int, default=8501, help="REST port")
    p.add_argument("--port", type=int, default=8500,
                   help="gRPC port (TF Serving's PredictionService and ModelService); 0: off")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; 0.0.0.0 exposes the server to the network")
    p.add_argument("--model_name", default="nwp", help="the name clients ask for")
    p.add_argument("--model_base_path", default="saved_models/nwp",
                   help="folder holding numbered version folders (1/, 2/, ...)")
    p.add_argument("--model_config_file", default=None,
                   help="ModelServerConfig text proto (several models, version policies, "
                        "labels); replaces --model_name/--model_base_path")
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                   help="how often to look for new versions; 0 loads once")
    p.add_argument("--model_config_file_poll_wait_seconds", type=float, default=0.0,
                   help="how often to read --model_config_file again and add, remove or "
                        "change models (new ones load before removed ones unload; an invalid "
                        "file keeps the current models, with the error in the log and the "
                        "status); 0 reads it once")
    p.add_argument("--grpc_socket_path", default="",
                   help="also serve gRPC on this Unix socket (relative or absolute path)")
    p.add_argument("--grpc_channel_arguments", default="",
                   help="grpcio server options, comma separated key=value (e.g. "
                        "grpc.max_connection_age_ms=2000); int values are passed as ints")
    _bool_flag(p, "enable_serialization_as_tensor_content",
               "gRPC Predict answers numbers in tensor_content instead of float_val, "
               "int64_val, ... (strings stay in string_val)")
    p.add_argument("--version", action="store_true",
                   help="print nwp-serve's and TensorFlow's versions and exit")
    _bool_flag(p, "enable_batching", "batch concurrent predict requests (TF Serving's flag)")
    _bool_flag(p, "enable_signature_method_name_check",
               "Classify/Regress/MultiInference also require the signature's method_name "
               "(tensorflow/serving/classify, .../regress); by default, as in TF Serving, "
               "signatures are recognised by their inputs and outputs")
    _bool_flag(p, "prefer_tflite_model",
               "answer serving_default with the version's LiteRT bundle (model.tflite, "
               "nwp-export --litert) when it has one; other signatures run in the SavedModel")
    p.add_argument("--batching_parameters_file", default=None,
                   help="BatchingParameters text proto: max_batch_size, batch_timeout_micros, "
                        "num_batch_threads, max_enqueued_batches")
    _bool_flag(p, "rest_api_enable_cors_support",
               "add CORS headers to REST answers (browsers on other origins)")
    p.add_argument("--tensorflow_intra_op_parallelism", type=int, default=0,
                   help="threads one TensorFlow op may use (0: TensorFlow chooses)")
    p.add_argument("--tensorflow_inter_op_parallelism", type=int, default=0,
                   help="TensorFlow ops run at once (0: TensorFlow chooses)")
    p.add_argument("--tensorflow_session_parallelism", type=int, default=0,
                   help="both of the above at once, used when neither is set (0: TensorFlow "
                        "chooses)")
    p.add_argument("--max_request_bytes", type=int, default=8 << 20,
                   help="larger request bodies get 413 (REST) or RESOURCE_EXHAUSTED (gRPC)")
    p.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                   help="REST requests not answered in this many milliseconds get 504 "
                        "(408 if the body is still arriving); 0: no limit (TF Serving's flag)")
    p.add_argument("--max_request_tensor_bytes", type=int, default=DEFAULT_MAX_TENSOR_BYTES,
                   help="requests whose inputs would take more memory once converted get 400 "
                        "(a string costs 64 bytes + its length, a number its size)")
    p.add_argument("--max_request_tokens", type=int, default=DEFAULT_MAX_REQUEST_TOKENS,
                   help="requests asking for more tokens of model work (prompt tokens, at most "
                        "256 a prompt, + generate's max_new_tokens) get 400")
    p.add_argument("--max_concurrent_heavy_requests", type=int, default=1,
                   help="requests estimated at over 4096 tokens of model work run at most this "
                        "many at a time (REST and gRPC together); the others wait, and one "
                        "whose client hangs up meanwhile never runs; 0: no limit")
    p.add_argument("--max_batch_size_per_request", type=int, default=1024,
                   help="requests with more rows (prompts) get 400; bounds memory per request")
    p.add_argument("--no_web_page", action="store_true",
                   help="do not serve the page at / (type with suggestions, generate, "
                        "surprisal; it calls only the REST API)")
    quiet = p.add_argument_group(
        "tensorflow_model_server flags with no effect here (accepted; each one given is "
        "named in one line at start)")
    for name, (kind, why) in NO_EFFECT.items():
        if kind is tf_bool:
            quiet.add_argument(f"--{name}", type=tf_bool, nargs="?", const=True,
                               metavar="true|false", help=why)
        else:
            quiet.add_argument(f"--{name}", type=kind, help=why)
    for name, kind in REFUSED.items():
        p.add_argument(f"--{name}", type=kind, nargs="?" if kind is tf_bool else None,
                       const=True if kind is tf_bool else None,
                       metavar="true|false" if kind is tf_bool else None,
                       help="refused if set: nwp-serve serves plaintext gRPC only")
    return p


def main(argv=None):
    """``nwp-serve``: load the models, serve REST (and gRPC when ``--port`` is set) until
    SIGTERM/SIGINT, then drain. Returns the exit status: 0 after a clean shutdown (or
    ``--version``), 2 after a one-line message for a start-up problem (a model that cannot
    load, a port in use). Unknown or refused flags exit 2 through argparse
    (``SystemExit``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:  # tensorflow_model_server --version: both versions, exit 0
        from importlib.metadata import PackageNotFoundError, version

        import tensorflow as tf

        try:
            ours = version("nwp-zoo")
        except PackageNotFoundError:
            ours = "unknown (not installed)"
        print(f"nwp-serve: {ours}\nTensorFlow Library: {tf.__version__}")
        return 0
    if args.use_alts_credentials or args.ssl_config_file:
        parser.error("--use_alts_credentials and --ssl_config_file are not supported: "
                     "nwp-serve serves plaintext gRPC only (put a TLS proxy in front)")
    for name in NO_EFFECT:
        if getattr(args, name) is not None:
            print(f"nwp-serve: --{name} has no effect here: {NO_EFFECT[name][1]}",
                  file=sys.stderr, flush=True)
    from serving.grpc_server import parse_channel_arguments

    try:
        channel_arguments = parse_channel_arguments(args.grpc_channel_arguments)
    except ValueError as err:
        parser.error(str(err))
    for flag in ("rest_api_port", "port"):
        if not 0 <= getattr(args, flag) <= 65535:
            parser.error(f"--{flag} must be in 0..65535, got {getattr(args, flag)}")
    for flag in ("max_batch_size_per_request", "max_request_bytes", "max_request_tensor_bytes",
                 "max_request_tokens"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.max_concurrent_heavy_requests < 0:
        parser.error(f"--max_concurrent_heavy_requests must be >= 0 (0: no limit), got "
                     f"{args.max_concurrent_heavy_requests}")
    if not 0 <= args.rest_api_timeout_in_ms <= 86_400_000:
        parser.error(f"--rest_api_timeout_in_ms must be in 0..86400000 (0: no limit), got "
                     f"{args.rest_api_timeout_in_ms}")
    if args.max_request_bytes > (1 << 31) - 1:  # grpcio's message limit is an int32
        parser.error(f"--max_request_bytes must be at most {(1 << 31) - 1}, got "
                     f"{args.max_request_bytes}")
    for flag in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism",
                 "tensorflow_session_parallelism"):
        if not 0 <= getattr(args, flag) <= 4096:
            parser.error(f"--{flag} must be in 0..4096 (0: TensorFlow chooses), got "
                         f"{getattr(args, flag)}")
    if (args.tensorflow_session_parallelism and args.tensorflow_intra_op_parallelism
            and args.tensorflow_inter_op_parallelism):  # TF Serving's server.cc refuses too
        parser.error("set --tensorflow_session_parallelism or --tensorflow_intra_op_parallelism"
                     " and --tensorflow_inter_op_parallelism, not all three")
    try:
        check_poll_seconds(args.file_system_poll_wait_seconds)
        check_poll_seconds(args.model_config_file_poll_wait_seconds,
                           "model_config_file_poll_wait_seconds")
    except ValueError as err:
        parser.error(str(err))
    if args.model_config_file_poll_wait_seconds and not args.model_config_file:
        print("nwp-serve: --model_config_file_poll_wait_seconds has no effect without "
              "--model_config_file", file=sys.stderr, flush=True)
    if args.batching_parameters_file and not args.enable_batching:
        parser.error("--batching_parameters_file needs --enable_batching (as in TF Serving)")
    batcher = None
    if args.enable_batching:
        from serving.batching import DEFAULTS, Batcher, read_batching_parameters

        try:
            params = (read_batching_parameters(args.batching_parameters_file)
                      if args.batching_parameters_file else dict(DEFAULTS))
        except ValueError as err:
            parser.error(str(err))
        batcher = Batcher(**params)
    if not (args.tensorflow_intra_op_parallelism or args.tensorflow_inter_op_parallelism):
        # TF Serving's server.cc: session parallelism sizes both pools when neither is set
        args.tensorflow_intra_op_parallelism = args.tensorflow_session_parallelism
        args.tensorflow_inter_op_parallelism = args.tensorflow_session_parallelism
    if args.tensorflow_intra_op_parallelism or args.tensorflow_inter_op_parallelism:
        import tensorflow as tf  # must be set before TensorFlow runs its first op

        tf.config.threading.set_intra_op_parallelism_threads(
            args.tensorflow_intra_op_parallelism)
        tf.config.threading.set_inter_op_parallelism_threads(
            args.tensorflow_inter_op_parallelism)
    try:
        loader = functools.partial(Servable, prefer_tflite=args.prefer_tflite_model)
        if args.model_config_file:
            manager = ModelManager(read_model_config_file(args.model_config_file), loader)
        else:
            manager = ModelManager({args.model_name: os.path.abspath(args.model_base_path)},
                                   loader)
        manager.load()
    except Exception as err:  # noqa: BLE001  any load failure: say what and where, exit 2
        print(f"nwp-serve: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 2
    def announce(aiohttp_banner):  # called by run_app once the REST port is bound
        # the port actually bound (the flag may be 0: "any free port"), from aiohttp's banner
        bound = re.search(r"http://\S+:(\d+)", aiohttp_banner or "")
        port = bound.group(1) if bound else args.rest_api_port
        for name, base in manager.base_paths.items():
            versions = [s["version"] for s in manager.status(name)["model_version_status"]
                        if s["state"] == "AVAILABLE"]
            print(f"serving model {name!r} version(s) {', '.join(versions)} from {base} at "
                  f"http://{args.host}:{port}/v1/models/{name}", flush=True)
            if args.prefer_tflite_model:
                lite = [v for v in versions if manager.get(name, int(v)).litert is not None]
                print(f"  --prefer_tflite_model: serving_default of version(s) "
                      f"{', '.join(lite) or 'none (no model.tflite)'} answered by LiteRT",
                      flush=True)
    manager.start_polling(args.file_system_poll_wait_seconds)
    if args.model_config_file:
        manager.start_config_polling(args.model_config_file,
                                     args.model_config_file_poll_wait_seconds)
    metrics = metrics_module.ServerMetrics()
    gate = HeavyGate(args.max_concurrent_heavy_requests)
    app = make_app(manager, args.max_request_bytes, args.max_batch_size_per_request, metrics,
                   batcher, args.rest_api_enable_cors_support, args.max_request_tensor_bytes,
                   args.max_request_tokens, args.rest_api_timeout_in_ms,
                   web_page=not args.no_web_page, gate=gate,
                   method_name_check=args.enable_signature_method_name_check)
    if args.port or args.grpc_socket_path:
        servers = []

        async def start_grpc(app):  # on the REST server's event loop, up before REST
            from serving.grpc_server import make_grpc_server

            server = make_grpc_server(manager, args.host, args.port, metrics=metrics,
                                      batcher=batcher, max_rows=args.max_batch_size_per_request,
                                      max_request_bytes=args.max_request_bytes,
                                      max_tensor_bytes=args.max_request_tensor_bytes,
                                      max_tokens=args.max_request_tokens,
                                      tensor_content=args.enable_serialization_as_tensor_content,
                                      socket_path=args.grpc_socket_path or None,
                                      channel_arguments=channel_arguments, gate=gate,
                                      method_name_check=args.enable_signature_method_name_check)
            await server.start()
            servers.append(server)
            if args.port:
                print(f"gRPC on {args.host}:{args.port}", flush=True)
            if args.grpc_socket_path:
                print(f"gRPC on unix:{args.grpc_socket_path}", flush=True)

        async def drain_grpc(app):  # the one stop: at shutdown, while REST finishes too
            for server in servers:
                await server.stop(grace=30)  # calls in flight finish; new ones: UNAVAILABLE

        # The last start-up step: once it has run, aiohttp's shutdown (and so drain_grpc)
        # always runs, also when the REST port then cannot be bound.
        app.on_startup.append(start_grpc)
        app.on_shutdown.append(drain_grpc)
    if batcher is not None:
        async def hurry_batches(app):  # requests in flight need not wait for batch-mates now
            batcher.hurry()

        app.on_shutdown.insert(0, hurry_batches)
    try:
        # handler_cancellation: a client that hangs up cancels its handler, so a request
        # still waiting (for a HeavyGate slot, a batch, a worker thread) never runs
        web.run_app(app, host=args.host, port=args.rest_api_port, print=announce,
                    shutdown_timeout=10.0, handler_cancellation=True,
                    keepalive_timeout=75.0)  # idle connections (no request yet, too)
    except OSError as err:
        print(f"nwp-serve: error: cannot listen on {args.host}: {err}", file=sys.stderr)
        return 2
    finally:
        manager.stop_polling()
        if batcher is not None:
            batcher.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
