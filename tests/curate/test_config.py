"""Config mistakes that would silently drop data fail in `load_config`, before any data is read,
with exit 2 and one line naming the key as written in the TOML."""

import re
from pathlib import Path

import pytest

from sftloop.curate.__main__ import main
from sftloop.curate.config import ConfigError, load_config
from sftloop.curate.stages import STAGES

FIX = Path(__file__).parents[1] / "fixtures" / "curate"
CONFIGS = Path(__file__).parents[2] / "curate" / "configs"


def write(tmp_path, stage: str = "", top: str = "", split: str = "") -> Path:
    """A config whose source exists (the fixtures) but must never be read: `no_reading` checks it."""
    p = tmp_path / "c.toml"
    p.write_text(f'name = "x"\n{top}\n[[sources]]\nname = "s"\nformat = "sharegpt"\npath = "{FIX}/sharegpt.json"\n'
                 f'[[stages]]\ntype = "clean"\n{stage}\n{split}\n')
    return p


@pytest.fixture
def no_reading(monkeypatch):
    """Fail loudly if anything starts reading sources."""
    import sftloop.curate.pipeline
    import sftloop.curate.sources

    def boom(*a, **k):
        raise AssertionError("data was read before the config was validated")

    monkeypatch.setattr(sftloop.curate.pipeline, "load_sources", boom)
    monkeypatch.setattr(sftloop.curate.sources, "iter_source", boom)


def fails(path: Path, key: str, capsys, *also: str) -> str:
    """main() exits 2 with a single stderr line that names `key`; returns that line."""
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_config(path)
    capsys.readouterr()
    assert main(["run", str(path), "--root", str(path.parent), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("config error: ") and key in err, err
    for s in also:
        assert s in err, err
    return err


CASES = {
    # the findings
    "embed_dedup_bogus_field": ('[[stages]]\ntype = "embed_dedup"\nfields = ["bogus"]', "", "",
                                "stages[1] (embed_dedup).fields[0]", ["unknown field 'bogus'", "user:first"]),
    "language_name_not_code": ('[[stages]]\ntype = "language"\nallowed = ["english"]', "", "",
                               "stages[1] (language).allowed[0]", ["not an ISO 639-1 code", "did you mean 'en'?"]),
    "language_iso3_code": ('[[stages]]\ntype = "language"\nallowed = ["en", "deu"]', "", "",
                           "stages[1] (language).allowed[1]", ["did you mean 'de'?"]),
    "language_empty_allowed": ('[[stages]]\ntype = "language"\nallowed = []', "", "",
                               "stages[1] (language).allowed", ["empty list would drop every row"]),
    "fractions_leave_no_train": ("", "", "[split]\nval_fraction = 0.6\ntest_fraction = 0.4",
                                 "split", ["val_fraction + test_fraction", "no train split"]),
    "min_tokens_above_max": ('[[stages]]\ntype = "token_limit"\nmin_tokens = 3000\nmax_tokens = 1024', "", "",
                             "stages[1] (token_limit).min_tokens", ["> max_tokens = 1024"]),
    "min_chars_above_max": ('[[stages]]\ntype = "language"\nmin_chars = 700', "", "",
                            "stages[1] (language).min_chars", ["> max_chars = 600"]),
    "unknown_eval_set": ('[[stages]]\ntype = "decontaminate"\neval_sets = ["mtbench", "mt-bench2"]', "", "",
                         "stages[1] (decontaminate).eval_sets[1]", ["unknown eval set 'mt-bench2'"]),
    "empty_eval_sets": ('[[stages]]\ntype = "decontaminate"\neval_sets = []', "", "",
                        "stages[1] (decontaminate).eval_sets", ["empty"]),
    "unknown_tokenizer": ("", 'tokenizer = "smollm2-135m-instruc"', "",
                          "tokenizer", ["neither a declared asset", "did you mean 'smollm2-135m-instruct'?"]),
    "tokenizer_not_a_model": ("", 'tokenizer = "sharegpt-v3-partial"', "",
                              "tokenizer", ["not a model directory"]),
    "unknown_embedding_model": ("", 'embedding_model = "minilm-l12"', "", "embedding_model", ["neither"]),
    # every names list, range and pair of every stage
    "exact_dedup_bogus_key": ('[[stages]]\ntype = "exact_dedup"\nkeys = ["conversation", "first_users"]', "", "",
                              "stages[1] (exact_dedup).keys[1]", ["first_user"]),
    "exact_dedup_empty_keys": ('[[stages]]\ntype = "exact_dedup"\nkeys = []', "", "",
                               "stages[1] (exact_dedup).keys", ["empty list"]),
    "embed_dedup_empty_fields": ('[[stages]]\ntype = "embed_dedup"\nfields = []', "", "",
                                 "stages[1] (embed_dedup).fields", ["empty list"]),
    "embed_dedup_bogus_role": ('[[stages]]\ntype = "embed_dedup"\nfields = ["user:first", "bot:all"]', "", "",
                               "stages[1] (embed_dedup).fields[1]", ["unknown field 'bot:all'"]),
    "embed_dedup_system_only": ('[[stages]]\ntype = "embed_dedup"\nfields = ["system"]', "", "",
                                "stages[1] (embed_dedup).fields", ["user or assistant"]),
    "margin_not_below_threshold": ('[[stages]]\ntype = "minhash_dedup"\nthreshold = 0.3\nborderline_margin = 0.4', "", "",
                                   "stages[1] (minhash_dedup).borderline_margin", [">= threshold"]),
    "ngram_zero": ('[[stages]]\ntype = "minhash_dedup"\nngram = 0', "", "", "stages[1] (minhash_dedup).ngram", ["got 0"]),
    "num_perm_absurd": ('[[stages]]\ntype = "minhash_dedup"\nnum_perm = 4', "", "", "stages[1] (minhash_dedup).num_perm", []),
    "threshold_zero": ('[[stages]]\ntype = "embed_dedup"\nthreshold = 0', "", "", "stages[1] (embed_dedup).threshold", []),
    "threshold_as_string": ('[[stages]]\ntype = "parroting"\nthreshold = "0.85"', "", "",
                            "stages[1] (parroting).threshold", ["valid number"]),
    "bool_as_string": ('[[stages]]\ntype = "language"\ndrop_undetermined = "no"', "", "",
                       "stages[1] (language).drop_undetermined", []),
    "und_is_not_a_language": ('[[stages]]\ntype = "language"\nallowed = ["en", "und"]', "", "",
                              "stages[1] (language).allowed[1]", ["drop_undetermined"]),
    "unknown_token_limit_mode": ('[[stages]]\ntype = "token_limit"\nmode = "truncate"', "", "",
                                 "stages[1] (token_limit).mode", ["truncate_turns"]),
    "mix_empty_prefix": ('[[stages]]\ntype = "mix"\nfocus_prefix = ""', "", "", "stages[1] (mix).focus_prefix", []),
    "max_drop_share_out_of_range": ('[[stages]]\ntype = "refusal"\nmax_drop_share = 1.5', "", "",
                                    "stages[1] (refusal).max_drop_share", []),
    "unknown_key_still_rejected": ('[[stages]]\ntype = "min_words"\nuser_minimum = 3', "", "",
                                   "stages[1] (min_words).user_minimum", ["Extra inputs"]),
    "unknown_stage_with_hint": ('[[stages]]\ntype = "exact_dedupe"', "", "", "stages[1].type", ["did you mean 'exact_dedup'?"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_mistake_exits_2_naming_the_key_before_reading_data(case, tmp_path, capsys, no_reading):
    stage, top, split, key, also = CASES[case]
    fails(write(tmp_path, stage, top, split), key, capsys, *also)


def test_a_nonexistent_source_does_not_hide_the_config_mistake(tmp_path, capsys, no_reading):
    p = tmp_path / "c.toml"
    p.write_text('name = "x"\n[[sources]]\nname = "s"\nformat = "sharegpt"\npath = "/nonexistent/huge.json"\n'
                 '[[stages]]\ntype = "language"\nallowed = ["english"]\n')
    fails(p, "stages[0] (language).allowed[0]", capsys, "did you mean 'en'?")


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.stages and all(st.drop_limit > 0 for st in cfg.stages)


def test_valid_choices_pass():
    from sftloop.curate.stages.dedup_embed import EmbedDedup
    from sftloop.curate.stages.filters import Language, TokenLimit

    assert EmbedDedup(fields=["user", "assistant:all", "system:first"]).fields[0] == "user"
    assert Language(allowed=["en", "de", "zh"], min_chars=600).allowed == ["en", "de", "zh"]
    assert TokenLimit(min_tokens=1024, max_tokens=1024, mode="truncate_turns").mode == "truncate_turns"


# The stages of this module's scope declare their own share; every stage's declaration, where made, is sane.
DECLARING = ["clean", "exact_dedup", "min_words", "truncated", "refusal", "parroting", "language", "token_limit",
             "minhash_dedup", "embed_dedup", "mix"]


@pytest.mark.parametrize("stage_type", DECLARING)
def test_every_stage_declares_its_expected_drop_share_below_its_limit(stage_type):
    cls = STAGES[stage_type]
    assert "expected_drop_share" in cls.__dict__, f"{cls.__name__} must declare expected_drop_share"
    assert 0 <= cls.expected_drop_share < cls.default_max_drop_share <= 1
    assert cls().drop_limit == cls.default_max_drop_share and cls(max_drop_share=0.9).drop_limit == 0.9


def test_all_declared_drop_shares_are_below_their_limits():
    for cls in STAGES.values():
        assert cls.expected_drop_share is None or 0 <= cls.expected_drop_share < cls.default_max_drop_share <= 1, cls
