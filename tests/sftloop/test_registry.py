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
