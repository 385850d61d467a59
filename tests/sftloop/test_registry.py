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
    assert "sk-secret" not in p.read_text()
    assert "api_key_env" not in reg["remote"].spec()


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
