import pytest

from sftloop import registry
from sftloop.registry import ModelEntry, RegistryError


def test_defaults_and_repo_file(tmp_path):
    reg = registry.load(tmp_path / "missing.toml")
    assert reg["base"].base_model == reg["prod"].base_model == "smollm2-135m-instruct"
    reg = registry.load()  # the repo's models.toml
    assert reg["prod"].base_model == "smollm2-135m-instruct"


def test_put_keeps_other_entries_and_never_writes_keys(tmp_path, monkeypatch):
    p = tmp_path / "models.toml"
    registry.put("prod", ModelEntry(base_model="smollm2-135m-instruct"), p)
    registry.put("remote", ModelEntry(endpoint="http://127.0.0.1:9/v1", model="m", api_key_env="MY_KEY"), p)
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    reg = registry.load(p)
    assert set(reg) == {"prod", "remote"}
    assert reg["remote"].api_key() == "sk-secret-123"
    assert not p.exists() and "sk-secret" not in registry.local_path(p).read_text()
    assert "api_key_env" not in reg["remote"].spec()


def test_put_writes_the_local_file_and_never_the_tracked_one(tmp_path):
    p = tmp_path / "models.toml"
    tracked = "# Model registry: hand-written header\n[models.prod]\nbase_model = \"smollm2-135m-instruct\"\n"
    p.write_text(tracked)
    registry.put("candidate", ModelEntry(base_model="smollm2-135m-instruct", adapter="runs/r/adapter"), p)
    registry.put("prod", ModelEntry(base_model="smollm2-135m-instruct", adapter="runs/r2/adapter"), p)
    assert p.read_text() == tracked  # header and entries untouched
    local = registry.local_path(p)
    assert local.name == "models.local.toml" and local.read_text().startswith("# Generated")
    reg = registry.load(p)
    assert reg["candidate"].adapter == "runs/r/adapter"
    assert reg["prod"].adapter == "runs/r2/adapter"  # the local entry replaces the tracked one
    local.write_text("[models.bad]\nadapter = 3\n")
    with pytest.raises(RegistryError, match="models.local.toml: models.bad"):
        registry.load(p)


def test_served_entry_resolves_to_the_server_only_while_alive_and_unchanged(tmp_path, monkeypatch):
    import os
    import subprocess

    p = tmp_path / "models.toml"
    p.write_text('[models.prod]\nbase_model = "smollm2-135m-instruct"\n')
    spec = registry.get("prod", p).spec()
    st = registry.ServeState(dtype="float32", entries={"prod": registry.ServedModel(
        url="http://127.0.0.1:9/v1", pid=os.getpid(), model="prod", spec=spec)})
    registry.serve_state_path(p).write_text(st.model_dump_json())
    entry, sm = registry.resolve("prod", p)
    assert entry.is_remote and entry.engine == "vllm" and entry.model == "prod" and sm is not None
    monkeypatch.setenv("SFTLOOP_BACKEND", "hf")
    assert registry.resolve("prod", p)[1] is None
    monkeypatch.delenv("SFTLOOP_BACKEND")
    registry.put("prod", ModelEntry(base_model="smollm2-135m-instruct", adapter="runs/x/adapter"), p)
    assert registry.resolve("prod", p)[1] is None  # the entry changed since the server started
    dead = subprocess.Popen(["true"])
    dead.wait()
    registry.local_path(p).unlink()
    st.entries["prod"].pid = dead.pid
    registry.serve_state_path(p).write_text(st.model_dump_json())
    assert registry.serve_state(p) is None and registry.resolve("prod", p)[1] is None


def test_invalid_entries(tmp_path):
    with pytest.raises(ValueError):
        ModelEntry(base_model="x", endpoint="http://h/v1", model="m")
    with pytest.raises(ValueError):
        ModelEntry(endpoint="http://h/v1")
    with pytest.raises(ValueError):
        ModelEntry(adapter="runs/x")
    p = tmp_path / "models.toml"
    p.write_text('[models.bad]\nendpoint = "http://h"\n')
    with pytest.raises(RegistryError, match="models.bad"):
        registry.load(p)
    with pytest.raises(RegistryError, match="api key"):
        ModelEntry(endpoint="http://h/v1", model="m", api_key_env="SFTLOOP_UNSET_VAR").api_key()


def test_resolve_local_asset(tmp_path):
    base, adapter = registry.resolve_local(ModelEntry(base_model="smollm2-135m-instruct"))
    assert (base / "config.json").exists() and adapter is None


def test_training_dataset_follows_the_run_lineage(tmp_path):
    import json

    from sftloop import registry

    ds = tmp_path / "data" / "datasets" / "d" / "v1"
    ds.mkdir(parents=True)
    (ds / "manifest.json").write_text("{}")
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"dataset": {"name": "d", "version": "v1", "path": str(ds)}}))
    reg = tmp_path / "models.toml"
    reg.write_text('[models.prod]\nbase_model = "x"\nadapter = "runs/r1/adapter"\nrun = "runs/r1"\n'
                   '[models.base]\nbase_model = "x"\n')
    assert registry.training_dataset("prod", tmp_path, reg) == ds
    assert registry.training_dataset("base", tmp_path, reg) is None
