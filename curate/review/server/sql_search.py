"""`sql`: an Argilla search engine that answers from the server's own SQL database.

argilla-server 2.x needs Elasticsearch/OpenSearch, which cannot be installed everywhere (not on
our CI machines). Its `SearchEngine` is pluggable (`SearchEngine.register(name)` +
`ARGILLA_SEARCH_ENGINE`), so this backend keeps no index at all: the index-maintenance methods
are no-ops and every query reads the dataset's records, responses, suggestions and vectors from
the database and evaluates text query, filters, sort and paging in Python. Review queues hold
hundreds to tens of thousands of records; at that size a query is a few milliseconds to a
second (docs/review.md). For millions of records run the stock Elasticsearch backend.

This module runs inside the argilla-server virtualenv (it imports `argilla_server`), never in
sftloop's own environment. `launch.py` registers it before starting the server and the worker.
"""

from __future__ import annotations

import hashlib
import math
import re
from types import SimpleNamespace
from typing import Any, Iterable, List, Optional, Union

from argilla_server.enums import (
    MetadataPropertyType,
    ResponseStatusFilter,
    SimilarityOrder,
    SortOrder,
)
from argilla_server.models import (
    Dataset,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    VectorSettings,
)
from argilla_server.search_engine.base import (
    AndFilter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import func, select

ENGINE_NAME = "sql"
_WORD = re.compile(r"\w+", re.UNICODE)


def _session():
    from argilla_server.database import AsyncSessionLocal  # settings are read at import: import late

    return AsyncSessionLocal()


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _field_text(value: Any) -> str:
    """Searchable text of a record field: text as is, chat messages' contents, custom JSON flattened."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_field_text(m.get("content", "")) if isinstance(m, dict) else _field_text(m) for m in value)
    if isinstance(value, dict):
        return " ".join(_field_text(v) for v in value.values())
    return "" if value is None else str(value)


def _text_score(record: Record, query: Optional[Union[TextQuery, str]]) -> Optional[float]:
    """Elasticsearch's `simple_query_string` with default_operator AND: every query word must occur
    (case-insensitive, word-level) in the searched field(s); the score counts the occurrences.
    `None` means "no match"."""
    if query is None:
        return 1.0
    if isinstance(query, str):
        query = TextQuery(q=query)
    values = [record.fields.get(query.field)] if query.field else list((record.fields or {}).values())
    words = [w.lower() for w in _WORD.findall(" ".join(_field_text(v) for v in values))]
    terms = [t.lower() for t in _WORD.findall(query.q)]
    if not terms:
        return 1.0
    counts = {t: words.count(t) for t in set(terms)}
    if any(c == 0 for c in counts.values()):
        return None
    return float(sum(counts.values()))


class _Doc:
    """The values a filter or sort can look at, read once per record (plain rows, not ORM objects:
    building 8,000 ORM records with their relationships cost most of a query's time)."""

    def __init__(self, record: SimpleNamespace):
        self.record = record
        self.metadata = record.metadata_ or {}
        self.suggestions: dict[str, SimpleNamespace] = {}
        self.responses: List[SimpleNamespace] = []
        self.vectors: dict = {}
        self.score = 1.0

    def record_property(self, name: str) -> Any:
        v = getattr(self.record, name, None)
        return str(v) if name in ("id",) and v is not None else v

    def responses_by(self, user: Optional[User]) -> List[SimpleNamespace]:
        return [r for r in self.responses if user is None or r.user_id == user.id]


def _scopes(node) -> list:
    """Every scope a filter tree or a sort list refers to."""
    if node is None:
        return []
    if isinstance(node, (list, tuple)):
        return [s for n in node for s in _scopes(n)]
    if isinstance(node, AndFilter):
        return _scopes(node.filters)
    return [node.scope]


def _matches_values(value: Any, f: Union[TermsFilter, RangeFilter]) -> bool:
    vals = [v for v in _as_list(value) if v is not None]
    if isinstance(f, TermsFilter):
        wanted = {str(v) for v in f.values}
        return any(str(v) in wanted for v in vals)
    for v in vals:
        try:
            x = float(v.timestamp() if hasattr(v, "timestamp") else v)
        except (TypeError, ValueError):
            continue
        if (f.ge is None or x >= f.ge) and (f.le is None or x <= f.le):
            return True
    return False


def _response_status_match(doc: _Doc, f: TermsFilter) -> bool:
    user = f.scope.user
    values = [str(v) for v in f.values]
    mine = doc.responses_by(user)
    if ResponseStatusFilter.pending.value in values and not mine:
        return True  # pending = no response yet (from this user, or from anyone without a user)
    wanted = {v for v in values if v != ResponseStatusFilter.pending.value}
    return any(str(r.status.value if hasattr(r.status, "value") else r.status) in wanted for r in mine)


def _matches(doc: _Doc, f) -> bool:
    if isinstance(f, AndFilter):
        return all(_matches(doc, sub) for sub in f.filters)
    scope = f.scope
    if isinstance(scope, ResponseFilterScope):
        if scope.question is None:
            if scope.property == "status" and isinstance(f, TermsFilter):
                return _response_status_match(doc, f)
            raise ValueError(f"cannot filter on response scope {scope}")
        return any(
            _matches_values((r.values or {}).get(scope.question, {}).get("value"), f) for r in doc.responses_by(scope.user)
        )
    if isinstance(scope, MetadataFilterScope):
        return _matches_values(doc.metadata.get(scope.metadata_property), f)
    if isinstance(scope, SuggestionFilterScope):
        s = doc.suggestions.get(scope.question)
        if s is None:
            return False
        v = getattr(s, scope.property, None)
        return _matches_values(v.value if hasattr(v, "value") and not isinstance(v, (str, int, float)) else v, f)
    if isinstance(scope, RecordFilterScope):
        v = doc.record_property(scope.property)
        return _matches_values(v.value if hasattr(v, "value") and not isinstance(v, str) else v, f)
    raise ValueError(f"cannot filter on scope {scope}")


def _sort_value(doc: _Doc, order: Order) -> Any:
    scope = order.scope
    if isinstance(scope, MetadataFilterScope):
        v = doc.metadata.get(scope.metadata_property)
    elif isinstance(scope, SuggestionFilterScope):
        s = doc.suggestions.get(scope.question)
        v = getattr(s, scope.property, None) if s else None
    elif isinstance(scope, RecordFilterScope):
        v = doc.record_property(scope.property)
    elif isinstance(scope, ResponseFilterScope):  # mean over the (user's) responses, like ES's mode=avg
        key = scope.question or scope.property
        vals = []
        for r in doc.responses_by(scope.user):
            x = (r.values or {}).get(key, {}).get("value") if scope.question else getattr(r, key, None)
            vals.extend(_as_list(x))
        nums = [float(x) for x in vals if isinstance(x, (int, float))]
        v = sum(nums) / len(nums) if nums else (str(vals[0]) if vals else None)
    else:
        raise ValueError(f"cannot sort on scope {scope}")
    if isinstance(v, list):
        v = v[0] if v else None
    if hasattr(v, "value") and not isinstance(v, (str, int, float)):
        v = v.value
    return v


def _sorted(docs: List[_Doc], sort: List[Order]) -> List[_Doc]:
    # stable sorts applied from the last key to the first; missing values go last either way
    for order in reversed(sort):
        desc = order.order == SortOrder.desc
        present = [d for d in docs if _sort_value(d, order) is not None]
        missing = [d for d in docs if _sort_value(d, order) is None]
        present.sort(key=lambda d: _key(_sort_value(d, order)), reverse=desc)
        docs = present + missing
    return docs


def _key(v: Any):
    if hasattr(v, "timestamp"):
        return (0, v.timestamp(), "")
    if isinstance(v, (int, float)):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def _user_shuffle_key(user_id: Any, record: Record) -> str:
    # Elasticsearch seeds `random_score` with the user id: each annotator sees the queue in a
    # different order that is stable for them. Same here, with a hash.
    return hashlib.sha256(f"{user_id}:{record.id}".encode()).hexdigest()


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLSearchEngine(SearchEngine):
    @classmethod
    async def new_instance(cls) -> "SQLSearchEngine":
        return cls()

    async def close(self):
        return None

    async def ping(self) -> bool:
        async with _session() as db:
            await db.execute(select(1))
        return True

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME, "backend": "argilla-server SQL database"}

    # -- index maintenance: nothing to maintain, the database is the index ---------------------
    async def create_index(self, dataset: Dataset):
        return None

    async def delete_index(self, dataset: Dataset):
        return None

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty):
        return None

    async def configure_index_vectors(self, vector_settings: VectorSettings):
        return None

    async def index_records(self, dataset: Dataset, records: Iterable[Record]):
        return None

    async def partial_record_update(self, record: Record, **update):
        return None

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]):
        return None

    async def update_record_response(self, response: Response):
        return None

    async def delete_record_response(self, response: Response):
        return None

    async def update_record_suggestion(self, suggestion: Suggestion):
        return None

    async def delete_record_suggestion(self, suggestion: Suggestion):
        return None

    # -- queries ---------------------------------------------------------------------------------
    async def _docs(self, dataset_id, fields: bool = False, responses: bool = False, suggestions: bool = False,
                    vectors=None) -> List[_Doc]:
        """The dataset's records with only what the query needs: `fields` for a text query, responses
        and suggestions when a filter or sort refers to them, one vector setting for similarity."""
        cols = [Record.id, Record.external_id, Record.status, Record.inserted_at, Record.updated_at, Record.metadata_]
        if fields:
            cols.append(Record.fields)
        async with _session() as db:
            rows = (await db.execute(select(*cols).where(Record.dataset_id == dataset_id)
                                     .order_by(Record.inserted_at, Record.id))).all()
            docs = {r.id: _Doc(SimpleNamespace(**r._mapping, **({} if fields else {"fields": {}}))) for r in rows}
            if responses:
                q = (select(Response.record_id, Response.user_id, Response.status, Response.values)
                     .join(Record, Record.id == Response.record_id).where(Record.dataset_id == dataset_id))
                for r in (await db.execute(q)).all():
                    if r.record_id in docs:
                        docs[r.record_id].responses.append(SimpleNamespace(**r._mapping))
            if suggestions:
                q = (select(Suggestion.record_id, Question.name, Suggestion.value, Suggestion.score, Suggestion.agent,
                            Suggestion.type)
                     .join(Question, Question.id == Suggestion.question_id)
                     .join(Record, Record.id == Suggestion.record_id).where(Record.dataset_id == dataset_id))
                for r in (await db.execute(q)).all():
                    if r.record_id in docs:
                        docs[r.record_id].suggestions[r.name] = SimpleNamespace(**r._mapping)
            if vectors is not None:
                from argilla_server.models import Vector

                q = select(Vector.record_id, Vector.value).where(Vector.vector_settings_id == vectors.id)
                for r in (await db.execute(q)).all():
                    if r.record_id in docs:
                        docs[r.record_id].vectors[vectors.id] = r.value
        return list(docs.values())

    async def _docs_for(self, dataset_id, query, filter, sort, vectors=None) -> List[_Doc]:
        scopes = _scopes(filter) + _scopes(sort)
        return await self._docs(
            dataset_id, fields=query is not None,
            responses=any(isinstance(sc, ResponseFilterScope) for sc in scopes),
            suggestions=any(isinstance(sc, SuggestionFilterScope) for sc in scopes),
            vectors=vectors,
        )

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        async with _session() as db:
            rows = (
                await db.execute(
                    select(Record.status, func.count()).where(Record.dataset_id == dataset.id).group_by(Record.status)
                )
            ).all()
        counts = {str(s.value if hasattr(s, "value") else s): n for s, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        async with _session() as db:
            rows = (
                await db.execute(
                    select(Response.status, func.count())
                    .join(Record, Record.id == Response.record_id)
                    .where(Record.dataset_id == dataset.id, Response.user_id == user.id)
                    .group_by(Response.status)
                )
            ).all()
        counts = {str(s.value if hasattr(s, "value") else s): n for s, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def search(
        self,
        dataset: Dataset,
        query: Optional[Union[TextQuery, str]] = None,
        filter=None,
        sort: Optional[List[Order]] = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Optional[str] = None,
    ) -> SearchResponses:
        hits = []
        for doc in await self._docs_for(dataset.id, query, filter, sort):
            score = _text_score(doc.record, query)
            if score is None or (filter is not None and not _matches(doc, filter)):
                continue
            doc.score = score
            hits.append(doc)
        if sort:
            hits = _sorted(hits, sort)
        elif user_id:  # relevance first (all 1.0 without a text query), then the user's own stable order
            hits.sort(key=lambda d: (-d.score, _user_shuffle_key(user_id, d.record)))
        elif query is not None:
            hits.sort(key=lambda d: -d.score)
        page = hits[offset : offset + limit]
        return SearchResponses(items=[SearchResponseItem(record_id=d.record.id, score=d.score) for d in page], total=len(hits))

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: Optional[List[float]] = None,
        record: Optional[Record] = None,
        query: Optional[Union[TextQuery, str]] = None,
        filter=None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: Optional[float] = None,
    ) -> SearchResponses:
        """Brute-force cosine over the dataset's vectors (exact, unlike an HNSW index)."""
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        target = value or record.vector_value_by_vector_settings(vector_settings)
        if not target:
            raise ValueError("Cannot find a vector value to apply with provided info")
        tnorm = math.sqrt(sum(x * x for x in target)) or 1.0
        scored = []
        for doc in await self._docs_for(dataset.id, query, filter, None, vectors=vector_settings):
            if record is not None and doc.record.id == record.id:
                continue
            vec = doc.vectors.get(vector_settings.id)
            if not vec or _text_score(doc.record, query) is None or (filter is not None and not _matches(doc, filter)):
                continue
            cos = sum(a * b for a, b in zip(target, vec)) / (tnorm * (math.sqrt(sum(x * x for x in vec)) or 1.0))
            score = cos if order == SimilarityOrder.most_similar else -cos
            if threshold is None or score >= threshold:
                scored.append((score, doc.record.id))
        scored.sort(key=lambda t: -t[0])
        items = [SearchResponseItem(record_id=rid, score=s) for s, rid in scored[:max_results]]
        return SearchResponses(items=items, total=len(items))

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        docs = await self._docs(metadata_property.dataset_id)
        values = [v for d in docs for v in _as_list(d.metadata.get(metadata_property.name)) if v is not None]
        if metadata_property.type == MetadataPropertyType.terms:
            counts: dict[str, int] = {}
            for v in values:
                counts[str(v)] = counts.get(str(v), 0) + 1
            terms = [TermsMetrics.TermCount(term=k, count=n) for k, n in sorted(counts.items(), key=lambda t: (-t[1], t[0]))]
            return TermsMetrics(total=len(values), values=terms)
        cls = IntegerMetadataMetrics if metadata_property.type == MetadataPropertyType.integer else FloatMetadataMetrics
        return cls(min=min(values) if values else None, max=max(values) if values else None)


# Written out by hand on purpose: tests compare it with `SearchEngine.__abstractmethods__`, so an
# argilla-server upgrade that adds or renames an abstract method fails loudly instead of at runtime.
IMPLEMENTED = frozenset({
    "new_instance", "close", "ping", "info", "create_index", "delete_index", "configure_metadata_property",
    "index_records", "partial_record_update", "delete_records", "update_record_response", "delete_record_response",
    "update_record_suggestion", "delete_record_suggestion", "get_dataset_progress", "get_dataset_user_progress",
    "search", "compute_metrics_for", "similarity_search",
})
