"""The mining CLIs know nothing of the demo: the justfile passes the demo's logs, dataset, judge and threshold."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sftloop.curate.mine.__main__ import main
from sftloop.settings import repo_root


@pytest.mark.parametrize("argv", [["run"], ["demo-logs"]])
def test_logs_and_dataset_are_explicit(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert ("logs" if argv == ["run"] else "--dataset") in capsys.readouterr().err


def _just(*args: str) -> str:
    just = shutil.which("just") or str(Path(sys.executable).parent / "just")
    return subprocess.run([just, "--dry-run", *args], cwd=repo_root(), capture_output=True, text=True, check=True).stderr


def test_just_recipes_pass_the_demo_flags_declared_once():
    text = (repo_root() / "justfile").read_text()
    assert text.count("data/datasets/sharegpt-demo") == 1  # one declaration (demo_dataset)
    demo = "run 'data/logs/demo/*.jsonl' --reference data/datasets/sharegpt-demo --judge base --judge-threshold 1.5"
    assert demo in _just("mine")
    assert demo + " --week 2026-W46" in _just("mine", "--week", "2026-W46")  # flags only: still the demo logs
    explicit = _just("mine", "logs.jsonl", "--judge", "judge")
    assert "run logs.jsonl --judge judge" in explicit and "--judge-threshold" not in explicit
    assert "demo-logs --dataset data/datasets/sharegpt-demo --out data/logs/demo" in _just("demo-logs")
