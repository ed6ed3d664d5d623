"""``--model_config_file_poll_wait_seconds``: the model config file read again, models added,
changed and removed with availability preserved, and a bad file never disturbing what is
served."""

import json
import time
import urllib.error
import urllib.request

import pytest

from serving.errors import ServingError
from serving.servable import ModelConfig, ModelManager, read_model_config_file
from tests.conftest import running_server


class _Folder:
    """A servable that is its folder; a folder holding ``BROKEN`` fails to load."""

    def __init__(self, name, version, path):
        import os

        if os.path.exists(os.path.join(path, "BROKEN")):
            raise OSError("not a SavedModel")
        self.name, self.version, self.path = name, version, path


def _config(path, models, labels=None):
    """Write a ModelServerConfig text proto serving ``models`` (``{name: base}``)."""
    text = "model_config_list {\n"
    for name, base in models.items():
        extra = "".join(f' version_labels {{ key: "{k}" value: {v} }}'
                        for k, v in (labels or {}).get(name, {}).items())
        text += f'  config {{ name: "{name}" base_path: "{base}"{extra} }}\n'
    path.write_text(text + "}\n")
    return path


def _wait(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_reconfigure_adds_changes_and_removes_models(tmp_path):
    for folder in ("a/1", "b/1", "b2/4"):
        (tmp_path / folder).mkdir(parents=True)
    manager = ModelManager({"a": ModelConfig(str(tmp_path / "a"))}, loader=_Folder)
    manager.load()
    manager.reconfigure({"a": ModelConfig(str(tmp_path / "a")),
                         "b": ModelConfig(str(tmp_path / "b"))})
    assert manager.get("b").path == str(tmp_path / "b" / "1")
    manager.reconfigure({"b": ModelConfig(str(tmp_path / "b2"))})  # a removed, b moved
    assert manager.get("b").version == 4
    with pytest.raises(ServingError) as err:
        manager.get("a")
    assert err.value.code == "NOT_FOUND"
    assert [s["state"] for s in manager.status("a")["model_version_status"]] == ["END"]
    states = {s["version"]: s["state"] for s in manager.status("b")["model_version_status"]}
    assert states == {"4": "AVAILABLE", "1": "END"}
    assert not manager.known("a") and list(manager.base_paths) == ["b"]


def test_a_moved_model_whose_new_versions_fail_keeps_serving_the_old(tmp_path):
    (tmp_path / "old" / "1").mkdir(parents=True)
    (tmp_path / "new" / "2").mkdir(parents=True)
    (tmp_path / "new" / "2" / "BROKEN").write_text("")
    manager = ModelManager({"m": ModelConfig(str(tmp_path / "old"))}, loader=_Folder)
    manager.load()
    manager.reconfigure({"m": ModelConfig(str(tmp_path / "new"))})
    assert manager.get("m").path == str(tmp_path / "old" / "1")
    states = {s["version"]: s for s in manager.status("m")["model_version_status"]}
    assert states["2"]["state"] == "END" and "not a SavedModel" in \
        states["2"]["status"]["error_message"]


def test_a_label_on_an_unavailable_version_rejects_the_whole_new_config(tmp_path):
    (tmp_path / "a" / "1").mkdir(parents=True)
    (tmp_path / "b" / "1").mkdir(parents=True)
    manager = ModelManager({"a": ModelConfig(str(tmp_path / "a"))}, loader=_Folder)
    manager.load()
    with pytest.raises(ValueError, match="points at version 7"):
        manager.reconfigure({"a": ModelConfig(str(tmp_path / "a"), labels={"x": 7}),
                             "b": ModelConfig(str(tmp_path / "b"))})
    assert manager.get("a").version == 1 and list(manager.configs) == ["a"]
    with pytest.raises(ServingError):
        manager.get("b")  # loaded for the rejected config, unloaded again


def test_the_config_file_is_polled_and_a_bad_one_keeps_the_models_serving(tmp_path, caplog):
    for folder in ("a/1", "b/1"):
        (tmp_path / folder).mkdir(parents=True)
    path = _config(tmp_path / "models.config", {"a": tmp_path / "a"})
    manager = ModelManager(read_model_config_file(path), loader=_Folder)
    manager.load()
    manager.start_config_polling(str(path), 0.05)
    try:
        _config(path, {"a": tmp_path / "a", "b": tmp_path / "b"})
        _wait(lambda: manager.known("b"))
        assert manager.get("b").version == 1
        path.write_text("model_config_list { config { name: ")  # half-written
        _wait(lambda: "config_error" in manager.status("a"))
        assert "Cannot read the model config file" in manager.status("b")["config_error"]
        assert manager.get("a").version == 1 and manager.get("b").version == 1
        path.write_text("model_config_list { }")  # valid text, but no model: refused
        _wait(lambda: "configures no model" in manager.status("a").get("config_error", ""))
        assert manager.known("a") and manager.known("b")
        _config(path, {"b": tmp_path / "b"})
        _wait(lambda: not manager.known("a"))
        assert "config_error" not in manager.status("b")
    finally:
        manager.stop_polling()
    assert any("previous configuration keeps serving" in r.getMessage()
               for r in caplog.records)


def test_bad_config_poll_intervals_are_refused_at_start(tmp_path):
    path = _config(tmp_path / "m.config", {"a": tmp_path})
    manager = ModelManager(read_model_config_file(path), loader=_Folder)
    with pytest.raises(ValueError, match="--model_config_file_poll_wait_seconds must be"):
        manager.start_config_polling(str(path), float("nan"))


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.slow
def test_nwp_serve_reloads_its_config_file(half_plus_models, tmp_path):
    path = _config(tmp_path / "models.config",
                   {"tf1_half_plus_two": half_plus_models["tf1_half_plus_two"]})
    with running_server(f"--model_config_file={path}",
                        "--model_config_file_poll_wait_seconds=1",
                        model="tf1_half_plus_two") as (url, _):
        _config(path, {"tf1_half_plus_two": half_plus_models["tf1_half_plus_two"],
                       "tf1_half_plus_three": half_plus_models["tf1_half_plus_three"]})
        _wait(lambda: "AVAILABLE" in json.dumps(_get(f"{url}/v1/models/tf1_half_plus_three")),
              60)
        request = urllib.request.Request(f"{url}/v1/models/tf1_half_plus_three:predict",
                                         data=b'{"instances": [2.0]}')
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert json.loads(resp.read()) == {"predictions": [4.0]}  # 0.5 * 2 + 3
        path.write_text("not a config")
        _wait(lambda: "config_error" in _get(f"{url}/v1/models/tf1_half_plus_two")[1], 30)
        assert _get(f"{url}/v1/models/tf1_half_plus_three")[1]["model_version_status"][0][
            "state"] == "AVAILABLE"
