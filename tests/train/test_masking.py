"""Masking on real chat templates: SmolLM2's own ChatML, plus Llama-3.1, Mistral-Instruct, Gemma-2 and
Qwen2.5 templates swapped into the SmolLM2 tokenizer (with their special tokens added), built offline."""

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from sftloop.assets import path
from train.masking import IGNORE, MaskingError, encode, label_segments

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
SPECS = {
    # name: (template file or None for the asset's own, special tokens, bos, eos, end-of-turn marker, system ok)
    "smollm2-chatml": (None, [], None, None, "<|im_end|>", True),
    "llama-3.1": ("llama31.jinja", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                  "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", True),
    "mistral-instruct": ("mistral.jinja", ["<s>", "</s>", "[INST]", "[/INST]"], "<s>", "</s>", "</s>", False),
    "gemma-2": ("gemma2.jinja", ["<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<end_of_turn>", "<end_of_turn>", False),
    "qwen2.5": ("qwen25.jinja", [], None, None, "<|im_end|>", True),
}

CONV = [
    {"role": "user", "content": "My order #4411 arrived damaged. What should I do?"},
    {"role": "assistant", "content": "I'm sorry about that! Please send a photo of the damage and I will arrange a replacement."},
    {"role": "user", "content": "Done, photo sent. How long will the replacement take?"},
    {"role": "assistant", "content": "Replacements ship within 2 business days; you'll get a tracking e-mail."},
]
SYSTEM = {"role": "system", "content": "You are the support assistant of an online shop."}


def make_tokenizer(name):
    tpl, specials, bos, eos, _, _ = SPECS[name]
    tok = AutoTokenizer.from_pretrained(path("smollm2-135m-instruct"))
    if specials:
        tok.add_special_tokens({"additional_special_tokens": specials})
    if tpl:
        tok.chat_template = (TEMPLATES / tpl).read_text()
    if bos:
        tok.bos_token = bos
    if eos:
        tok.eos_token = eos
    return tok


@pytest.mark.parametrize("name", list(SPECS))
def test_labels_are_exactly_assistant_replies_plus_end_of_turn(name):
    tok = make_tokenizer(name)
    marker, system_ok = SPECS[name][4], SPECS[name][5]
    conv = ([SYSTEM] if system_ok else []) + CONV
    enc = encode(tok, conv)
    segs = [s.strip() for s in label_segments(tok, enc)]
    expected = [m["content"] + marker for m in conv if m["role"] == "assistant"]
    assert segs == expected
    # nothing from system/user turns or role headers is trained
    labelled = tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])
    for m in conv:
        if m["role"] != "assistant":
            assert m["content"] not in labelled
    for header in ("assistant\n", "model\n", "[INST]", "<|start_header_id|>", "<|im_start|>"):
        assert header not in labelled
    # the end-of-turn token the model must learn to emit is a single labelled token
    eot = tok.convert_tokens_to_ids(marker)
    assert sum(1 for t, lab in zip(enc.input_ids, enc.labels) if lab == eot) == 2


def test_zero_trainable_tokens_is_an_error():
    tok = make_tokenizer("smollm2-chatml")
    with pytest.raises(MaskingError):
        encode(tok, [{"role": "user", "content": "hello"}])


def test_overflow_cuts_at_a_turn_boundary_or_drops():
    tok = make_tokenizer("smollm2-chatml")
    full = encode(tok, CONV)
    first = encode(tok, CONV[:2])
    cut = encode(tok, CONV, max_len=len(full.input_ids) - 1, overflow="turns")
    assert cut.input_ids == first.input_ids and cut.n_turns_cut == 2
    assert label_segments(tok, cut)[-1].strip().endswith("<|im_end|>")  # the kept reply is whole
    with pytest.raises(MaskingError, match="overflow = drop"):
        encode(tok, CONV, max_len=len(full.input_ids) - 1, overflow="drop")
    with pytest.raises(MaskingError, match="does not fit"):
        encode(tok, CONV, max_len=10)


def test_template_that_rewrites_history_is_refused():
    tok = make_tokenizer("smollm2-chatml")
    # a template that renders only the last two messages is not prefix-stable
    tok.chat_template = "{% for m in messages[-2:] %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" \
                        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    with pytest.raises(MaskingError, match="prefix-stable"):
        encode(tok, CONV)
