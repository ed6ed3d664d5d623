"""Versions on disk: policies, labels, hot reload that never loses availability."""

import os
import shutil
import time

import pytest

from serving.errors import ServingError
from serving.servable import ModelConfig, ModelManager, read_model_config_file


class FakeServable:
    def __init__(self, name, version, path):
        if not os.path.exists(os.path.join(path, "saved_model.pb")):
            raise OSError("SavedModel file does not exist")
        self.name, self.version, self.path = name, version, path


def _version(base, n, complete=True):
    path = base / str(n)
    path.mkdir(parents=True)
    if complete:
        (path / "saved_model.pb").write_bytes(b"x")
    return path


def _states(manager, name="m"):
    return {int(s["version"]): (s["state"], s["status"]["error_code"])
            for s in manager.status(name)["model_version_status"]}


def test_new_version_is_loaded_before_the_old_is_unloaded(tmp_path):
    _version(tmp_path, 1)
    manager = ModelManager({"m": str(tmp_path)}, loader=FakeServable)
    manager.load()
    assert manager.get("m").version == 1
    _version(tmp_path, 2)
    manager.poll()
    assert manager.get("m").version == 2
    assert _states(manager) == {2: ("AVAILABLE", "OK"), 1: ("END", "OK")}


def test_a_half_written_or_broken_version_never_replaces_a_good_one(tmp_path):
    _version(tmp_path, 1)
    manager = ModelManager({"m": str(tmp_path)}, loader=FakeServable)
    manager.load()
    broken = _version(tmp_path, 2, complete=False)
    (tmp_path / ".tmp-3-99").mkdir()  # an export in progress: not a version
    manager.poll()
    assert manager.get("m").version == 1
    states = manager.status("m")["model_version_status"]
    assert states[0]["version"] == "2" and states[0]["state"] == "END"
    assert "does not exist" in states[0]["status"]["error_message"]
    (broken / "saved_model.pb").write_bytes(b"x")  # the copy finishes: retried
    os.utime(broken / "saved_model.pb", (time.time() + 5, time.time() + 5))
    manager.poll()
    assert manager.get("m").version == 2


def test_deleting_the_newest_version_rolls_back(tmp_path):
    _version(tmp_path, 1)
    _version(tmp_path, 2)
    manager = ModelManager({"m": str(tmp_path)}, loader=FakeServable)
    manager.load()
    shutil.rmtree(tmp_path / "2")
    manager.poll()
    assert manager.get("m").version == 1


def test_policies_and_labels(tmp_path):
    for n in (1, 2, 3):
        _version(tmp_path, n)
    latest2 = ModelManager({"m": ModelConfig(str(tmp_path), "latest", num_versions=2)},
                           loader=FakeServable)
    latest2.load()
    assert sorted(v for v, (st, _) in _states(latest2).items() if st == "AVAILABLE") == [2, 3]
    specific = ModelManager({"m": ModelConfig(str(tmp_path), "specific", versions=(1,),
                                              labels={"stable": 1})}, loader=FakeServable)
    specific.load()
    assert specific.get("m").version == 1 and specific.get("m", label="stable").version == 1
    with pytest.raises(ServingError, match="Specific\\(m, 3\\)"):
        specific.get("m", 3)
    with pytest.raises(ServingError, match="Unrecognized servable version label: canary"):
        specific.get("m", label="canary")


def test_model_config_file(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("""model_config_list {
      config { name: 'a' base_path: '/models/a' model_platform: 'tensorflow'
               model_version_policy { specific { versions: 2 versions: 3 } }
               version_labels { key: 'stable' value: 2 } }
      config { name: 'b' base_path: '/models/b' } }""")
    models = read_model_config_file(path)
    assert models["a"] == ModelConfig("/models/a", "specific", 1, (2, 3), {"stable": 2})
    assert models["b"] == ModelConfig("/models/b")
    path.write_text("model_config_list { config { name: ")
    with pytest.raises(ValueError, match="Cannot read"):
        read_model_config_file(path)


def test_a_model_without_a_loadable_version_cannot_start(tmp_path):
    _version(tmp_path, 1, complete=False)
    with pytest.raises(RuntimeError, match="does not exist"):
        ModelManager({"m": str(tmp_path)}, loader=FakeServable).load()


def test_a_broken_highest_version_does_not_hide_a_good_lower_one(tmp_path):
    _version(tmp_path, 1)
    manager = ModelManager({"m": str(tmp_path)}, loader=FakeServable)
    manager.load()
    _version(tmp_path, 2)
    _version(tmp_path, 3, complete=False)
    manager.poll()
    assert manager.get("m").version == 2
    assert _states(manager) == {3: ("END", "UNKNOWN"), 2: ("AVAILABLE", "OK"), 1: ("END", "OK")}


def test_a_label_on_a_missing_version_refuses_to_start(tmp_path):
    _version(tmp_path, 1)
    manager = ModelManager({"m": ModelConfig(str(tmp_path), labels={"ghost": 9})},
                           loader=FakeServable)
    with pytest.raises(RuntimeError, match="'ghost'.*version 9"):
        manager.load()


def test_a_failed_version_is_retried_when_a_file_deep_inside_changes(tmp_path):
    _version(tmp_path, 1)
    manager = ModelManager({"m": str(tmp_path)}, loader=FakeServable)
    manager.load()
    two = _version(tmp_path, 2, complete=False)
    (two / "variables").mkdir()
    (two / "variables" / "data").write_bytes(b"")
    manager.poll()
    assert manager.get("m").version == 1
    (two / "saved_model.pb").write_bytes(b"x")
    (two / "variables" / "data").write_bytes(b"the rest of the copy")
    manager.poll()
    assert manager.get("m").version == 2
