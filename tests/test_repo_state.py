"""`just demo` leaves `git status` clean: everything it writes is ignored, and the registry's
generated entries go to models.local.toml, never into the tracked models.toml (issue 16.5)."""

import re
import subprocess
from pathlib import Path

import pytest

from sftloop import registry
from sftloop.registry import ModelEntry

ROOT = Path(__file__).resolve().parents[1]


def _justfile_var(name: str) -> str:
    m = re.search(rf'^{name} := "([^"]+)"', (ROOT / "justfile").read_text(), re.M)
    assert m, f"justfile declares {name}"
    return m.group(1)


def _demo_outputs() -> list[str]:
    """Every kind of path the demo writes (curate, train, serve, gate, demo-logs, mine)."""
    return [f"{_justfile_var('demo_dataset')}/20261201-abc/train.parquet",
            f"{_justfile_var('demo_logs')}/2026-W48.jsonl",
            "runs/20261201-0000-abcd/run.json", "runs/20261201-0000-abcd/adapter/adapter_model.safetensors",
            "reports/gate-20261201-000000/report.html", "reports/mine-2026-W48/report.md",
            "models.local.toml", ".sftloop-serve.json"]


@pytest.mark.parametrize("path", _demo_outputs())
def test_every_demo_output_is_ignored_by_git(path):
    r = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert r.returncode == 0, f"{path} is not ignored: `just demo` would leave git status dirty"


def test_registering_a_candidate_in_a_clone_leaves_git_status_clean(tmp_path):
    """What `just train` does to the registry, in a throwaway git repo holding our .gitignore and models.toml."""
    for f in (".gitignore", "models.toml"):
        (tmp_path / f).write_text((ROOT / f).read_text())
    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True, text=True)  # noqa: E731
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    header = (tmp_path / "models.toml").read_text().splitlines()[0]
    registry.put("candidate", ModelEntry(base_model="smollm2-135m-instruct", adapter="runs/r/adapter"),
                 tmp_path / "models.toml")
    assert git("status", "--porcelain").stdout == ""
    assert (tmp_path / "models.toml").read_text().splitlines()[0] == header  # the header comment survives
    assert registry.load(tmp_path / "models.toml")["candidate"].adapter == "runs/r/adapter"
