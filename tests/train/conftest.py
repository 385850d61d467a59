import json
import shutil
import textwrap
from pathlib import Path

import pytest

from train_helpers import write_train_config

FIX = Path(__file__).parents[1] / "fixtures" / "curate"


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """A project root with a small curated dataset version (real curate run on the fixtures)."""
    from sftloop.curate.__main__ import main

    root = tmp_path_factory.mktemp("proj")
    shutil.copytree(FIX, root / "in")
    (root / "models.toml").write_text('[models.base]\nbase_model = "smollm2-135m-instruct"\n')
    (root / "c.toml").write_text(textwrap.dedent(f"""
        name = "tiny"
        [[sources]]
        name = "chat"
        format = "messages"
        path = "{root}/in/messages.jsonl"
        [[sources]]
        name = "alpaca"
        format = "alpaca"
        path = "{root}/in/alpaca.jsonl"
        [[sources]]
        name = "bitext"
        format = "bitext"
        path = "{root}/in/bitext.csv"
        [[sources]]
        name = "woz"
        format = "multiwoz"
        path = "{root}/in/multiwoz.jsonl"
        [[stages]]
        type = "clean"
        [[stages]]
        type = "token_limit"
        max_tokens = 256
        [split]
        val_fraction = 0.25
    """))
    assert main(["run", str(root / "c.toml"), "--root", str(root), "--quiet"]) == 0
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_root):
    from sftloop.train.config import load_config
    from sftloop.train.trainer import train

    run_dir = train(load_config(write_train_config(tiny_root)), tiny_root, progress=False)
    return run_dir, json.loads((run_dir / "run.json").read_text())
