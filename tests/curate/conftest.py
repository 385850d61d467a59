from pathlib import Path

import pytest

FIX = Path(__file__).parents[1] / "fixtures" / "curate"


@pytest.fixture
def ctx():
    from sftloop.curate.stages.base import Context

    return Context(progress=False)


@pytest.fixture
def fix():
    return FIX
