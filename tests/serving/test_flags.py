"""nwp-serve takes every flag tensorflow_model_server takes, in its syntax."""

import argparse

import pytest

from serving.grpc_server import parse_channel_arguments
from serving.server import build_parser, main, tf_bool

# Every flag in tensorflow_model_server's flag list (tensorflow/serving,
# tensorflow_serving/model_servers/main.cc, commit 9d981c5c), with a value of its type.
TF_SERVING_FLAGS = {
    "port": "8500", "grpc_socket_path": "/tmp/s", "rest_api_port": "8501",
    "rest_api_num_threads": "4", "rest_api_timeout_in_ms": "30000",
    "rest_api_enable_cors_support": "true", "enable_batching": "true",
    "allow_version_labels_for_unavailable_models": "false",
    "batching_parameters_file": "b.txt", "enable_per_model_batching_parameters": "false",
    "model_config_file": "m.config", "model_config_file_poll_wait_seconds": "0",
    "model_name": "m", "model_base_path": "/tmp/m", "num_load_threads": "0",
    "num_unload_threads": "0", "max_num_load_retries": "5",
    "load_retry_interval_micros": "60000000", "file_system_poll_wait_seconds": "1",
    "flush_filesystem_caches": "true", "tensorflow_session_parallelism": "0",
    "tensorflow_session_config_file": "s.txt", "tensorflow_intra_op_parallelism": "0",
    "tensorflow_inter_op_parallelism": "0", "use_alts_credentials": "false",
    "ssl_config_file": "", "platform_config_file": "p.txt",
    "per_process_gpu_memory_fraction": "0.5", "saved_model_tags": "serve",
    "grpc_channel_arguments": "grpc.max_connection_age_ms=2000", "grpc_max_threads": "8",
    "enable_model_warmup": "true", "num_request_iterations_for_warmup": "0",
    "version": None, "monitoring_config_file": "mon.txt",
    "remove_unused_fields_from_bundle_metagraph": "true", "prefer_tflite_model": "false",
    "num_tflite_pools": "1", "num_tflite_interpreters_per_pool": "1",
    "enable_signature_method_name_check": "false", "xla_cpu_compilation_enabled": "false",
    "xla_gpu_compilation_enabled": "false", "enable_profiler": "true",
    "thread_pool_factory_config_file": "t.txt", "mixed_precision": "bfloat16",
    "skip_initialize_tpu": "false", "enable_grpc_healthcheck_service": "false",
    "enable_serialization_as_tensor_content": "true",
}


@pytest.mark.parametrize("name", sorted(TF_SERVING_FLAGS))
def test_every_tf_serving_flag_parses(name):
    value = TF_SERVING_FLAGS[name]
    arg = f"--{name}" if value is None else f"--{name}={value}"
    build_parser().parse_args([arg])


def test_unknown_and_abbreviated_flags_fail_naming_the_flag(capsys):
    for arg in ("--no_such_flag=1", "--enable_batch", "--enable_serialization=true"):
        with pytest.raises(SystemExit) as info:
            main([arg])
        assert info.value.code == 2
        assert arg in capsys.readouterr().err


@pytest.mark.parametrize("text, value", [("true", True), ("TRUE", True), ("1", True),
                                         ("false", False), ("False", False), ("0", False)])
def test_booleans_read_as_tensorflow_reads_them(text, value):
    assert tf_bool(text) is value
    args = build_parser().parse_args([f"--enable_batching={text}"])
    assert args.enable_batching is value


def test_bare_boolean_is_true_and_bad_boolean_fails():
    assert build_parser().parse_args(["--rest_api_enable_cors_support"]) \
        .rest_api_enable_cors_support is True
    assert build_parser().parse_args([]).enable_serialization_as_tensor_content is False
    with pytest.raises(argparse.ArgumentTypeError):
        tf_bool("yes")


@pytest.mark.parametrize("args, text", [
    (["--use_alts_credentials"], "plaintext gRPC only"),
    (["--ssl_config_file=ssl.txt"], "plaintext gRPC only"),
    (["--tensorflow_session_parallelism=2", "--tensorflow_intra_op_parallelism=1",
      "--tensorflow_inter_op_parallelism=1"], "not all three"),
    (["--grpc_channel_arguments=novalue"], "is not key=value"),
])
def test_refused_combinations_exit_at_start(capsys, args, text):
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2 and text in capsys.readouterr().err


def test_channel_arguments_pass_ints_as_ints():
    assert parse_channel_arguments("grpc.max_connection_age_ms=2000,grpc.primary_user_agent=x"
                                   ",a=-5") == [("grpc.max_connection_age_ms", 2000),
                                                ("grpc.primary_user_agent", "x"), ("a", -5)]
    assert parse_channel_arguments("") == []
    assert parse_channel_arguments("big=4294967296") == [("big", "4294967296")]


def test_version_prints_both_versions_and_exits_0(capsys):
    import tensorflow as tf

    assert main(["--version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("nwp-serve: ") and out[1] == f"TensorFlow Library: {tf.__version__}"


@pytest.mark.parametrize("flags, pools", [
    (["--tensorflow_session_parallelism=3"], "3 3"),
    (["--tensorflow_session_parallelism=3", "--tensorflow_intra_op_parallelism=2"], "2 0"),
])
def test_session_parallelism_sizes_both_pools_when_neither_is_set(flags, pools):
    # TF Serving's server.cc: intra/inter when either is set, else session parallelism for both
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = ("import sys; from serving.server import main; "
            f"assert main({flags!r} + ['--model_base_path=/nonexistent/x']) == 2; "
            "import tensorflow as tf; t = tf.config.threading; "
            "print(t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[-1] == pools
