"""The gate's configuration, validated: `evaluate/configs/gate.toml` (or `--config`) read into pydantic
models that reject unknown keys. Every default lives here, once; the TOML only states what differs.

    [rules]                 # RuleSettings overrides for every profile
    [judge]                 # model = registry entry of the judge
    [profiles.<name>]       # Profile: sizes, time limits, `rules` overrides, `non_blocking` / `blocking` rule names
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG = Path(__file__).parent / "configs" / "gate.toml"


class GateConfigError(ValueError):
    """The gate config is invalid (the gate exits 2 naming the file and key)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleSettings(_Strict):
    """Thresholds of the declared rules (`evaluate/rules.py`); the docs table is generated from these."""

    golden_margin: float = Field(0.05, description="non-inferiority margin on the paired golden score difference (0-1 scale)")
    category_alpha: float = Field(0.05, description="family-wise error per-category tests, Holm-corrected")
    format_compliance: float = Field(0.95, description="share of deterministic checks the candidate passes")
    pairwise_ci_low: float = Field(0.45, description="lower bound of the win-rate 95% CI (\"not worse\")")
    must_improve: bool = Field(False, description="stricter: win-rate CI lower bound > 0.5")
    max_unknown_share: float = Field(0.5, description="most judged pairs whose two orders may disagree")
    probe_p_value: float = Field(0.05, description="no probe significantly worse (McNemar, exact)")
    probe_max_relative_drop: float = Field(0.10, description="and none more than this much lower, relative")
    judge_min_accuracy: float = Field(0.6, description="judge calibration floor: Wilson lower bound on human pairs")
    judge_min_consistency: float = Field(0.6, description="judge position consistency floor")
    judge_max_first_share: float = Field(0.8, description="most decisive verdicts that may name the first-shown answer")
    judge_min_entropy_bits: float = Field(0.5, description="verdict entropy floor (0 = a constant judge)")
    max_judge_error_rate: float = Field(0.1, description="judge outputs with no verdict label, as a share of requests")
    max_injection_flip_rate: float = Field(0.25, description="most known outcomes a judge-directed instruction may flip")
    max_false_refusal: float = Field(0.05, description="refusals on golden items that must be answered (Wilson upper bound)")
    length_ks_p: float = Field(0.01, description="output-length distribution shift vs prod: KS p below this fails")
    max_words_ratio: float = Field(1.5, description="most words per answer relative to prod (paired mean ratio)")
    min_items: int = Field(5, description="fewest paired items (or calibration pairs, probe items) a rule decides on")


class Profile(_Strict):
    golden_support: int = Field(22, description="support items, stratified over intents (0 = all)")
    golden_mtbench: int = Field(4, description="MT-Bench questions (0 = all)")
    golden_ifbench: int = Field(4, description="IFBench prompts (0 = all)")
    mtbench_turn2: bool = Field(True, description="ask MT-Bench turn 2 after the model's own turn-1 answer")
    max_new_tokens: int = 64
    reasoning_tokens: int = Field(0, description="the judge's short reasoning per graded answer")
    probe_items: int = Field(20, description="per BIG-bench task")
    calibration_pairs: int = Field(24, description="hhh_alignment pairs (0 = all)")
    injection_cases: int = 8
    request_timeout_s: float = Field(60.0, description="one request to an endpoint, per attempt")
    max_retries: int = Field(2, description="retries per request (the openai client's backoff)")
    gate_deadline_s: float = Field(3600.0, description="the whole gate; past it the gate exits 2 naming the endpoint")
    rules: dict[str, float | bool | int] = Field(default_factory=dict, description="RuleSettings overrides")
    non_blocking: list[str] = Field(default_factory=list, description="rule names reported but not deciding")
    blocking: list[str] = Field(default_factory=list, description="rule names made blocking")


class JudgeSettings(_Strict):
    model: str = "base"


class GateConfig(_Strict):
    rules: dict[str, float | bool | int] = Field(default_factory=dict)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)
    profiles: dict[str, Profile] = Field(default_factory=lambda: {"demo": Profile()})


class Resolved(BaseModel):
    """One profile, resolved: its sizes, the rule thresholds and which rules block."""

    name: str
    profile: Profile
    settings: RuleSettings
    judge: str
    blocking: dict[str, bool]


def _err(path: Path, e: ValidationError) -> GateConfigError:
    where = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
    return GateConfigError(f"{path}: invalid gate config: {where}")


def load(path: Path | None = None, profile: str = "demo") -> Resolved:
    from sftloop.evaluate.rules import RULES

    path = path or CONFIG
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise GateConfigError(f"{path}: cannot read the gate config: {e}") from e
    try:
        cfg = GateConfig.model_validate(raw)
    except ValidationError as e:
        raise _err(path, e) from None
    if profile not in cfg.profiles:
        raise GateConfigError(f"{path}: unknown profile {profile!r} (known: {sorted(cfg.profiles)})")
    prof = cfg.profiles[profile]
    known = set(RuleSettings.model_fields)
    for where, over in (("rules", cfg.rules), (f"profiles.{profile}.rules", prof.rules)):
        bad = sorted(set(over) - known)
        if bad:
            raise GateConfigError(f"{path}: [{where}] unknown rule setting {bad[0]!r} (known: {', '.join(sorted(known))})")
    try:
        settings = RuleSettings.model_validate({**cfg.rules, **prof.rules})
    except ValidationError as e:
        raise _err(path, e) from None
    names = {r.name for r in RULES}
    blocking = {r.name: r.blocking for r in RULES}
    for key, value in (("non_blocking", False), ("blocking", True)):
        for n in getattr(prof, key):
            if n not in names:
                raise GateConfigError(f"{path}: profiles.{profile}.{key}: unknown rule {n!r} (rules: {', '.join(sorted(names))})")
            blocking[n] = value
    return Resolved(name=profile, profile=prof, settings=settings, judge=cfg.judge.model, blocking=blocking)
