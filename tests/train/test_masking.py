"""Masking on real chat templates: SmolLM2's own ChatML, plus Llama-3/3.1, Mistral-Instruct (v0.1 and v0.3),
Gemma-2, Qwen2.5, Qwen3, Phi-3, Phi-3.5, Llama-2-chat, Zephyr, DeepSeek-R1, Command-R and Vicuna templates swapped
into the SmolLM2 tokenizer (with their special tokens added), built offline. Sources of the templates: tests/fixtures/templates/README.md."""

import copy
import functools
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from transformers import AutoTokenizer

from sftloop.assets import path
from sftloop.train.data import DataError, encode_records, stop_token_ids
from sftloop.train.masking import IGNORE, MaskingError, check_template, encode, label_segments

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "templates"
PHI = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
INST = ["<s>", "</s>", "[INST]", "[/INST]"]
BOS_DS, EOS_DS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"


@dataclass
class Spec:
    file: str | None  # None: the asset's own template
    specials: list[str] = field(default_factory=list)
    bos: str | None = None
    eos: str | None = None
    marker: str = "<|im_end|>"  # what is trained after each reply (what the model emits to stop)
    system_ok: bool = True
    emit: str = "keep"  # how the template emits a reply: "keep" verbatim, "strip" (trim/strip)
    lead: str = ""  # text the template puts before the reply inside the assistant's part (Llama-2's ' ')


SPECS = {
    "smollm2-chatml": Spec(None),
    "llama-3.1": Spec("llama31.jinja", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                      "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", emit="strip"),
    "mistral-instruct": Spec("mistral.jinja", INST, "<s>", "</s>", "</s>", system_ok=False),
    "mistral-v0.3": Spec("mistral_v03.jinja", INST, "<s>", "</s>", "</s>", emit="strip", lead=" "),
    "gemma-2": Spec("gemma2.jinja", ["<bos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<end_of_turn>",
                    "<end_of_turn>", system_ok=False, emit="strip"),
    "qwen2.5": Spec("qwen25.jinja"),
    "phi-3": Spec("phi3.jinja", PHI, None, "<|end|>", "<|end|>"),
    "phi-3.5": Spec("phi35.jinja", PHI, None, "<|end|>", "<|end|>"),
    "llama-2-chat": Spec("llama2.jinja", INST, "<s>", "</s>", " </s>", emit="strip", lead=" "),
    "zephyr": Spec("zephyr.jinja", ["</s>", "<|user|>", "<|assistant|>", "<|system|>"], None, "</s>", "</s>"),
    "llama-3": Spec("llama3.jinja", ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
                    "<|begin_of_text|>", "<|eot_id|>", "<|eot_id|>", emit="strip"),
    "qwen3": Spec("qwen3.jinja"),
    "deepseek-r1": Spec("deepseek_r1.jinja", [BOS_DS, "<｜User｜>", "<｜Assistant｜>", EOS_DS], BOS_DS, EOS_DS, EOS_DS),
    "command-r": Spec("command_r.jinja", ["<BOS_TOKEN>", "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>",
                                          "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>"], "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>",
                      "<|END_OF_TURN_TOKEN|>", emit="strip"),
    "vicuna": Spec("vicuna.jinja", ["</s>"], None, "</s>", "</s>", lead=" "),  # 'ASSISTANT: ' + reply: the space joins its first token
}

CONV = [
    {"role": "user", "content": "My order #4411 arrived damaged. What should I do?"},
    {"role": "assistant", "content": "I'm sorry about that! Please send a photo of the damage and I will arrange a replacement."},
    {"role": "user", "content": "Done, photo sent. How long will the replacement take?"},
    {"role": "assistant", "content": "Replacements ship within 2 business days; you'll get a tracking e-mail."},
]
SYSTEM = {"role": "system", "content": "You are the support assistant of an online shop."}
# blank lines, code indentation, trailing spaces on a line and at the end of the reply
WS_REPLY = "Try this:\n\n```python\ndef f(x):\n    return x  \n```\n\n\nThen restart.  "


@functools.cache
def _smollm2():
    return AutoTokenizer.from_pretrained(path("smollm2-135m-instruct"))


def make_tokenizer(name):
    s = SPECS[name]
    tok = copy.deepcopy(_smollm2())  # a fresh tokenizer per test, without reloading it from disk
    if s.specials:
        tok.add_special_tokens({"additional_special_tokens": s.specials})
    if s.file:
        tok.chat_template = (TEMPLATES / s.file).read_text()
    if s.bos:
        tok.bos_token = s.bos
    if s.eos:
        tok.eos_token = s.eos
    return tok


def expected(spec: Spec, conv):
    emit = (lambda c: c.strip()) if spec.emit == "strip" else (lambda c: c)
    return [spec.lead + emit(m["content"]) + spec.marker for m in conv if m["role"] == "assistant"]


def labelled_text(tok, enc):
    return tok.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])


def conversations(spec: Spec):
    sys = [SYSTEM] if spec.system_ok else []
    return {"single-turn": CONV[:2], "multi-turn": CONV, "system+single": sys + CONV[:2], "system+multi": sys + CONV}


@pytest.mark.parametrize("name", list(SPECS))
def test_labels_are_exactly_assistant_replies_plus_end_of_turn(name):
    tok, spec = make_tokenizer(name), SPECS[name]
    for label, conv in conversations(spec).items():
        enc = encode(tok, conv)
        assert label_segments(tok, enc) == expected(spec, conv), (name, label)
        # nothing from system/user turns or role headers is trained
        labelled = labelled_text(tok, enc)
        for m in conv:
            if m["role"] != "assistant":
                assert m["content"] not in labelled
        for header in ("assistant\n", "model\n", "[INST]", "<|start_header_id|>", "<|im_start|>", "<|assistant|>", "<s>"):
            assert header not in labelled
        # the end-of-turn token the model must learn to emit is labelled once per reply
        eot = tok.convert_tokens_to_ids(spec.marker.strip())
        n_replies = sum(m["role"] == "assistant" for m in conv)
        assert sum(1 for t, lab in zip(enc.input_ids, enc.labels) if lab == eot) == n_replies, (name, label)


@pytest.mark.parametrize("name", list(SPECS))
def test_every_character_the_template_keeps_is_trained_whitespace_included(name):
    tok, spec = make_tokenizer(name), SPECS[name]
    conv = [CONV[0], {"role": "assistant", "content": WS_REPLY}, CONV[2], {"role": "assistant", "content": "OK.\n\n"}]
    enc = encode(tok, conv)
    # one contiguous labelled run per reply: the blank lines and indentation inside are not masked
    assert label_segments(tok, enc) == expected(spec, conv)


def test_phi3_trailing_endoftext_is_never_trained():
    # the real Phi-3-mini setup: eos_token <|endoftext|>, generation stops on <|end|> (generation_config.eos_token_id)
    tok = make_tokenizer("phi-3")
    tok.eos_token = "<|endoftext|>"
    end = tok.convert_tokens_to_ids("<|end|>")
    for conv in (CONV[:2], [SYSTEM] + CONV):
        enc = encode(tok, conv, stop_ids=(end,))
        assert tok.apply_chat_template(conv, tokenize=False).endswith("<|end|>\n<|endoftext|>")
        assert label_segments(tok, enc) == expected(SPECS["phi-3"], conv)
        assert tok.convert_tokens_to_ids("<|endoftext|>") not in [lab for lab in enc.labels if lab != IGNORE]


def test_eos_that_is_not_the_end_of_turn_marker_is_refused():
    tok = make_tokenizer("phi-3")
    tok.eos_token = "<|endoftext|>"  # and nothing says generation stops on <|end|>
    with pytest.raises(MaskingError, match=r"'<\|end\|>'.*eos_token is '<\|endoftext\|>'.*never stops") as e:
        encode(tok, CONV[:2])
    assert e.value.kind == "template"
    chatml = make_tokenizer("smollm2-chatml")
    chatml.eos_token = "<|endoftext|>"
    with pytest.raises(MaskingError, match=r"'<\|im_end\|>'.*never stops"):
        encode(chatml, CONV)


def test_end_of_turn_marker_that_would_not_be_trained_is_refused():
    tok = make_tokenizer("smollm2-chatml")
    # the eos only after the last turn: a reply followed by another turn teaches no stop
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% else %}{{ eos_token }}{% endif %}")
    with pytest.raises(MaskingError, match="never stops"):
        encode(tok, CONV[:2])


def test_eos_check_runs_once_per_tokenizer_and_again_when_it_changes():
    tok = make_tokenizer("smollm2-chatml")
    info = check_template(tok)
    assert info.marker == "<|im_end|>" and check_template(tok) is info
    tok.eos_token = "<|endoftext|>"
    with pytest.raises(MaskingError):
        check_template(tok)


def test_template_that_drops_past_reasoning_trains_what_it_renders():
    tok = make_tokenizer("smollm2-chatml")
    # DeepSeek-R1's assistant branch: past reasoning is cut from the rendering
    tok.chat_template = ("{% for m in messages %}{% if m.role == 'user' %}<|im_start|>user\n{{ m.content }}<|im_end|>\n"
                         "{% else %}{% set c = m.content %}{% if '</think>' in c %}{% set c = c.split('</think>')[-1] %}"
                         "{% endif %}<|im_start|>assistant\n{{ c }}<|im_end|>\n{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    conv = [CONV[0], {"role": "assistant", "content": "<think>photo needed</think>Please send a photo."}, CONV[2],
            {"role": "assistant", "content": "<think>2 days</think>Two business days."}]
    assert label_segments(tok, encode(tok, conv)) == ["Please send a photo.<|im_end|>", "Two business days.<|im_end|>"]


def test_generation_markers_and_bos_per_turn_templates():
    tok = make_tokenizer("phi-3")
    # Phi-4-mini style: {% generation %} markers, no newline after the header, eos only after the last turn
    tok.chat_template = ("{% for message in messages %}{% if message['role'] == 'assistant' %}{{ '<|assistant|>' }}"
                         "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{% else %}"
                         "{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% else %}{{ eos_token }}{% endif %}")
    assert label_segments(tok, encode(tok, [SYSTEM] + CONV)) == expected(SPECS["phi-3"], CONV)
    tok = make_tokenizer("llama-2-chat")  # Llama-2 renders <s> before every user turn: never trained
    enc = encode(tok, CONV)
    assert "<s>" not in labelled_text(tok, enc) and enc.input_ids.count(tok.convert_tokens_to_ids("<s>")) == 2


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
    # a template that renders only the last two messages hides the first reply
    tok.chat_template = "{% for m in messages[-2:] %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}" \
                        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    with pytest.raises(MaskingError, match="turn 1 .*prefix-stable"):
        encode(tok, CONV)


def test_template_that_hides_or_transforms_the_reply_is_refused():
    tok = make_tokenizer("smollm2-chatml")
    for body, match in (("{{ '[redacted]' if m.role == 'assistant' else m.content }}", "turn 1 does not appear"),
                        ("{{ m.content | upper if m.role == 'assistant' else m.content }}", "turn 1: .*transforms")):
        tok.chat_template = "{% for m in messages %}<|im_start|>{{ m.role }}\n" + body + "<|im_end|>\n{% endfor %}"
        with pytest.raises(MaskingError, match=match):
            encode(tok, CONV)


def test_encode_records_refuses_a_bad_template_once_and_counts_unlocatable_rows():
    cfg = SimpleNamespace(max_len=512, overflow="turns")
    rec = lambda i, msgs: SimpleNamespace(id=i, messages=[SimpleNamespace(**m) for m in msgs])  # noqa: E731
    tok = make_tokenizer("gemma-2")  # raises on a system turn: that row is refused, the others encode
    out, rep = encode_records([rec("a", CONV), rec("b", [SYSTEM] + CONV)], tok, cfg)
    assert len(out) == 1 and rep.unlocatable == 1 and rep.examples[0].startswith("b: ")
    assert stop_token_ids(make_tokenizer("smollm2-chatml")) == (2,)  # SmolLM2's generation_config.eos_token_id
    tok = make_tokenizer("phi-3")
    tok.eos_token = "<|endoftext|>"
    with pytest.raises(DataError, match="never stops"):
        encode_records([rec("a", CONV)], tok, cfg)


def test_qwen3_final_reasoning_is_trained_and_past_reasoning_is_dropped():
    tok = make_tokenizer("qwen3")
    conv = [SYSTEM, CONV[0], {"role": "assistant", "content": "<think>\nphoto first\n</think>\n\nPlease send a photo."},
            CONV[2], {"role": "assistant", "content": "<think>\nusual delay\n</think>\n\nTwo business days."}]
    # the final reply's <think> block moves into its header (content-dependent scaffolding); it is model output
    assert label_segments(tok, encode(tok, conv)) == ["Please send a photo.<|im_end|>",
                                                      "usual delay\n</think>\n\nTwo business days.<|im_end|>"]


def test_marker_that_differs_from_the_probe_is_taken_from_this_conversation():
    tok = make_tokenizer("smollm2-chatml")
    # with a system prompt this template ends turns with <|endoftext|> instead of <|im_end|> (both stop generation)
    tok.chat_template = ("{% set end = '<|endoftext|>' if messages[0].role == 'system' else '<|im_end|>' %}"
                         "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{{ end }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    enc = encode(tok, [SYSTEM] + CONV, stop_ids=(tok.convert_tokens_to_ids("<|endoftext|>"),))
    assert label_segments(tok, enc) == [m["content"] + "<|endoftext|>" for m in CONV if m["role"] == "assistant"]
