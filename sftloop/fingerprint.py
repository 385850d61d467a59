"""What must be identical between training and serving: the chat template and the tokenizer.

`chat_template_sha256` hashes the template string exactly as the dataset manifest does
(train/data.py); `tokenizer_sha256` hashes the fast tokenizer's canonical JSON (vocabulary, merges,
normalizer, pre-tokenizer, added tokens), so a re-saved copy of the same tokenizer has the same hash
and a changed vocabulary or special token does not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def chat_template_sha256(tok: Any) -> str:
    return hashlib.sha256((tok.chat_template or "").encode()).hexdigest()


def tokenizer_sha256(tok: Any) -> str:
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:  # a slow tokenizer: vocabulary and special tokens
        import json

        text = json.dumps([sorted(tok.get_vocab().items()), tok.all_special_tokens], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(model_dir: Path) -> dict[str, str]:
    """{chat_template_sha256, tokenizer_sha256} of the tokenizer stored in `model_dir`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    return {"chat_template_sha256": chat_template_sha256(tok), "tokenizer_sha256": tokenizer_sha256(tok)}
