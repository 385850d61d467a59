import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smol_dir():
    from sftloop import assets

    return assets.path("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def smol_tokenizer(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


@pytest.fixture(scope="session")
def smol_model(smol_dir):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32)
    m.eval()
    return m


@pytest.fixture(scope="session")
def minilm():
    from sentence_transformers import SentenceTransformer

    from sftloop import assets

    return SentenceTransformer(str(assets.path("minilm-l6-v2")), device="cpu")
