"""The training filters and the failure miner share one refusal and one truncation rule (sftloop/rules.py):
the same reply is a failure for the miner exactly when the filter keeps it out of training."""

import pytest
from curate_frames import frame

from sftloop.curate.mine.detect import detect
from sftloop.rules import refusal_match
from sftloop.curate.stages.filters import Refusal, Truncated

Q = "Could you explain how compound interest works for my savings account?"

REFUSALS = [
    "I won't help with that.",
    "I can't assist with that request",
    "I can’t assist with that request.",          # curly apostrophe
    "I CANNOT PROVIDE that information.",          # case
    "i will not help you with that.",
    "As an AI language model, I cannot...",
    "As an AI, I do not have personal opinions.",
    "I'm sorry, but I cannot help with that.",
    "I’m sorry, but I can’t do that.",
    "Sorry, but I won't do that for you.",
    "I apologize, but I am unable to fulfill this request.",
    "I'm not able to browse the internet.",
    "I do not have access to your account.",
    "I don't have feelings, but thanks for asking!",
    "My knowledge cutoff is 2021, so I can't say.",
]
NOT_REFUSALS = [
    "I can't wait to help!",
    "I cannot stress enough how important an emergency fund is.",
    "I can't help but notice your balance grew; that is the interest compounding.",
    "You can't provide a refund after 30 days, according to the policy.",
    "Compound interest is interest on interest.",
    "I can help you with that: first, open the app.",
]
TRUNCATED = [
    "The refund will be processed once the warehouse confirms that the",
    "Here is the code:\n```python\nprint(1)\n",
    "Interest is added to the balance every month and then the next month,",
]
COMPLETE = [
    "A full sentence.",
    "Steps:\n1. open the app\n- tap settings",
    "Thanks",
    "The interest is added monthly (see the table below):",
    "```python\nprint(1)\n```",
]


def filter_says(stage, reply: str) -> bool:
    return stage.apply(frame([[("user", Q), ("assistant", reply)]]), None).dropped.height == 1


@pytest.mark.parametrize("reply", REFUSALS + NOT_REFUSALS)
def test_refusal_filter_and_miner_agree(reply):
    expected = reply in REFUSALS
    assert filter_says(Refusal(), reply) is expected, reply
    assert ("behaviour:refusal" in detect(Q, reply)) is expected, reply
    assert (refusal_match(reply) is not None) is expected, reply


@pytest.mark.parametrize("reply", TRUNCATED + COMPLETE)
def test_truncation_filter_and_miner_agree(reply):
    expected = reply in TRUNCATED
    assert filter_says(Truncated(), reply) is expected, reply
    assert ("behaviour:truncated" in detect(Q, reply)) is expected, reply


def test_matched_phrase_is_the_text_as_written():
    assert refusal_match("Well. I can’t assist with that, sorry.") == "I can’t assist"
    assert refusal_match("AS AN AI LANGUAGE MODEL I cannot") == "AS AN AI LANGUAGE MODEL"


def test_column_prefilter_never_misses_what_the_rule_matches():
    import polars as pl

    from sftloop.rules import refusal_candidates

    texts = REFUSALS + NOT_REFUSALS + TRUNCATED + COMPLETE
    cand = refusal_candidates(pl.Series(texts)).to_list()
    assert all(c for t, c in zip(texts, cand) if refusal_match(t) is not None)
    assert cand[texts.index("I can't help but notice your balance grew; that is the interest compounding.")]  # confirmed by re


@pytest.mark.parametrize("text,declines", [
    ("I'm sorry, but I can't share account passwords.", True),
    ("I’m not equipped to provide invoice or order details.", True),
    ("I cannot assist with that request.", True),
    ("As an AI language model, I have no body. Your order ships Monday.", False),
    ("My knowledge cutoff is 2023, but here is how returns work: ...", False),
    ("I can't wait to help you with your return!", False),
])
def test_the_gate_counts_the_declining_phrases_of_the_same_rule(text, declines):
    """evaluate's false-refusal rule and curate's filter read one list (sftloop/rules.py)."""
    from sftloop.evaluate.checks import is_refusal as gate_refusal
    assert gate_refusal(text) is declines
    if declines:
        assert refusal_match(text) is not None  # what the gate calls a refusal, curate drops too
