"""Pipeline stages. Each is a small pydantic config with `apply(frame, ctx) -> StageResult`.

A stage only says keep or drop-with-reason (and, for duplicates, the representative's id);
the runner does the accounting. `STAGES` maps the `type` used in TOML configs to the class.
"""

from curate.stages.base import Context, StageResult
from curate.stages.clean import Clean
from curate.stages.decontaminate import Decontaminate
from curate.stages.dedup_embed import EmbedDedup
from curate.stages.dedup_exact import ExactDedup
from curate.stages.dedup_minhash import MinHashDedup
from curate.stages.filters import Language, MinWords, Parroting, Refusal, TokenLimit, Truncated
from curate.stages.leakage import LabelLeakage
from curate.stages.mix import Mix
from curate.stages.system_prompt import SystemPrompt

STAGES = {
    cls.model_fields["type"].default: cls
    for cls in (Clean, MinWords, TokenLimit, Language, Parroting, Truncated, Refusal,
                ExactDedup, MinHashDedup, EmbedDedup, Decontaminate, Mix, LabelLeakage, SystemPrompt)
}

__all__ = ["STAGES", "Context", "StageResult"]
