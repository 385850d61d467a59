"""Connect to Argilla with a timeout, and say clearly what is wrong when it cannot be reached; the
credentials (local defaults, overridden by the environment) and a queue's dataset in our workspace."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

DEFAULT_URL = "http://127.0.0.1:6900"
UPSERT_BULK_MAX = 500  # the argilla SDK's RecordsAPI.MAX_RECORDS_PER_UPSERT_BULK (argilla 2.x)

# Local-use defaults; set the environment variables for anything shared (docs/review.md).
DEFAULTS = {
    "SFTLOOP_ARGILLA_OWNER": "owner",
    "SFTLOOP_ARGILLA_OWNER_PASSWORD": "sftloop-owner-local",
    "SFTLOOP_ARGILLA_OWNER_KEY": "sftloop-owner-local-key",
    "SFTLOOP_ARGILLA_ANNOTATOR": "annotator",
    "SFTLOOP_ARGILLA_ANNOTATOR_PASSWORD": "sftloop-annotator-local",
    "SFTLOOP_ARGILLA_ANNOTATOR_KEY": "sftloop-annotator-local-key",
    "SFTLOOP_ARGILLA_WORKSPACE": "sftloop",
}


def credential(name: str) -> str:
    return os.environ.get(name, DEFAULTS[name])


class ReviewError(RuntimeError):
    """Argilla unreachable, key refused, queue missing: the message says which and what to do."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    api_key: str
    workspace: str
    timeout: float = 30.0

    @staticmethod
    def from_env(url: str | None = None, api_key: str | None = None) -> "Endpoint":
        return Endpoint(
            url=(url or os.environ.get("ARGILLA_API_URL") or DEFAULT_URL).rstrip("/"),
            api_key=api_key or os.environ.get("ARGILLA_API_KEY") or credential("SFTLOOP_ARGILLA_OWNER_KEY"),
            workspace=credential("SFTLOOP_ARGILLA_WORKSPACE"),
        )


def check(ep: Endpoint, retries: int = 2) -> dict:
    """GET /api/v1/me with the key, bounded retries; returns the user or raises ReviewError."""
    last: Exception | None = None
    for _ in range(retries + 1):
        try:
            r = httpx.get(f"{ep.url}/api/v1/me", headers={"X-Argilla-Api-Key": ep.api_key}, timeout=ep.timeout)
        except httpx.HTTPError as e:
            last = e
            continue
        if r.status_code in (401, 403):
            raise ReviewError(f"review: Argilla at {ep.url} refused the API key (set ARGILLA_API_KEY to a valid key)")
        if r.status_code != 200:
            raise ReviewError(f"review: Argilla at {ep.url} answered {r.status_code} to /api/v1/me: {r.text[:200]}")
        return r.json()
    raise ReviewError(f"review: cannot reach Argilla at {ep.url} ({type(last).__name__}: {last}); "
                      "start it with `just review-server` or set ARGILLA_API_URL")


def connect(ep: Endpoint):
    """An `argilla.Argilla` client, after `check` proved the server and the key work."""
    check(ep)
    import argilla as rg

    return rg.Argilla(api_url=ep.url, api_key=ep.api_key, timeout=int(ep.timeout), retries=2)


def workspace(client, ep: Endpoint):
    """Our workspace, created when missing (looked up in the list: the SDK's by-name lookup warns
    "not found" on every first push)."""
    import argilla as rg

    ws = next((w for w in client.workspaces if w.name == ep.workspace), None)
    if ws is None:
        ws = rg.Workspace(name=ep.workspace, client=client).create()
    return ws


def dataset_for(client, ep: Endpoint, queue, create: bool = True):
    """The queue's (`queues.Queue`) Argilla dataset in our workspace, created with its settings when missing."""
    import argilla as rg

    ws = workspace(client, ep)
    ds = next((d.get() for d in ws.datasets if d.name == queue.name), None)
    if ds is None:
        if not create:
            raise ReviewError(f"review: queue {queue.name!r} does not exist in workspace {ep.workspace!r} at {ep.url}; "
                              "push it first")
        ds = rg.Dataset(name=queue.name, workspace=ws, settings=queue.settings(), client=client).create()
    return ds


def existing_records(ds) -> dict[str, dict]:
    """Record id -> fields of every record a queue holds."""
    return {str(r.id): dict(r.fields or {}) for r in ds.records(with_responses=False, with_suggestions=False)}


def log(ds, records: list) -> int:
    """Upsert `records` (by id). One batch up to the server's bulk limit: the SDK warns whenever the
    batch size it is given is not the one it uses, so it gets the one it will use."""
    if records:
        ds.records.log(records, batch_size=min(len(records), UPSERT_BULK_MAX))
    return len(records)
