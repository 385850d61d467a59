"""Connect to Argilla with a timeout, and say clearly what is wrong when it cannot be reached."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from sftloop.curate.review.serve import credential

DEFAULT_URL = "http://127.0.0.1:6900"


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
    import argilla as rg

    ws = client.workspaces(ep.workspace)
    if ws is None:
        ws = rg.Workspace(name=ep.workspace, client=client).create()
    return ws
