"""Pipeline stages. Each is a small pydantic config with `apply(frame, ctx) -> StageResult`.

A stage only says keep or drop-with-reason (and, for duplicates, the representative's id);
the runner does the accounting. `STAGES` maps the `type` used in TOML configs to the class.
"""

from sftloop.curate.stages.base import Context, StageResult
from sftloop.curate.stages.clean import Clean
from sftloop.curate.stages.decontaminate import Decontaminate
from sftloop.curate.stages.dedup_embed import EmbedDedup
from sftloop.curate.stages.dedup_exact import ExactDedup
from sftloop.curate.stages.dedup_minhash import MinHashDedup
from sftloop.curate.stages.filters import Language, MinWords, Parroting, Refusal, TokenLimit, Truncated
from sftloop.curate.stages.leakage import LabelLeakage
from sftloop.curate.stages.mix import Mix
from sftloop.curate.stages.system_prompt import SystemPrompt

STAGES = {
    cls.model_fields["type"].default: cls
    for cls in (Clean, MinWords, TokenLimit, Language, Parroting, Truncated, Refusal,
                ExactDedup, MinHashDedup, EmbedDedup, Decontaminate, Mix, LabelLeakage, SystemPrompt)
}

__all__ = ["STAGES", "Context", "StageResult"]
