"""token_limit (truncate_turns) counts a kept prefix from the one tokenization of the whole conversation where
the cut falls just before an added special token (ChatML: `<|im_start|>`), instead of tokenizing the prefix
again: on real ShareGPT rows the result is the same as confirming every prefix by its own tokenization."""

import polars as pl

from sftloop.curate.sources import SourceConfig, iter_source
from sftloop.curate.stages import filters
from sftloop.curate.stages.base import Context
from sftloop.curate.stages.clean import Clean
from sftloop.schema import PARQUET_SCHEMA, QuarantineWriter


def test_truncate_turns_without_confirming_tokenization_keeps_the_same_rows_bytes_and_counts(monkeypatch):
    src = SourceConfig(name="sharegpt", format="sharegpt", path="asset:sharegpt-v3-partial", limit=250)
    rows = [rec.to_row() for rec in iter_source(src, QuarantineWriter(None), [])]
    ctx = Context(progress=False)
    df = Clean().apply(pl.DataFrame(rows, schema=PARQUET_SCHEMA).with_row_index("_row"), ctx).kept
    stage = filters.TokenLimit(max_tokens=1024, mode="truncate_turns", exact_counts=True)  # whole-text counts
    tokenized: list[int] = []
    n_tokens = filters._n_tokens

    def counting(tok, texts):
        tokenized.append(len(texts))
        return n_tokens(tok, texts)

    monkeypatch.setattr(filters, "_n_tokens", counting)
    fast = stage.apply(df, ctx)
    fast_report = dict(ctx.reports["token_limit"])
    fast_confirmed = sum(tokenized)
    monkeypatch.setattr(filters, "_split_marks", lambda tok: ())  # every estimate confirmed by tokenization
    tokenized.clear()
    slow = stage.apply(df, ctx)
    assert fast_report["rows_truncated"] > 50 and sum(tokenized) >= fast_report["rows_truncated"]
    assert fast_confirmed == 0  # SmolLM2's template cuts before <|im_start|>: every count came from the one pass
    assert fast.kept.equals(slow.kept) and fast.dropped.equals(slow.dropped)
    assert fast_report == ctx.reports["token_limit"]
