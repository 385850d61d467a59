"""Calls the Argilla web UI makes (list a queue, submit a response), for tests."""

import httpx

from sftloop.curate.review import serve

OWNER_KEY = serve.DEFAULTS["SFTLOOP_ARGILLA_OWNER_KEY"]
ANNOTATOR_KEY = serve.DEFAULTS["SFTLOOP_ARGILLA_ANNOTATOR_KEY"]


def ui_api(url: str, key: str):
    return httpx.Client(base_url=url, headers={"X-Argilla-Api-Key": key}, timeout=30)


def dataset_id(ep, name: str) -> str:
    import argilla as rg

    client = rg.Argilla(api_url=ep.url, api_key=OWNER_KEY)
    return str(client.datasets(name=name, workspace=ep.workspace).id)


def search(ep, key: str, name: str, body: dict | None = None, **params) -> dict:
    """What the UI calls to list a queue: POST /api/v1/me/datasets/{id}/records/search."""
    with ui_api(ep.url, key) as c:
        r = c.post(f"/api/v1/me/datasets/{dataset_id(ep, name)}/records/search",
                   params={"include": "responses", "limit": 100, **params}, json=body or {})
        r.raise_for_status()
        return r.json()


def respond(ep, key: str, record_uuid: str, values: dict, status: str = "submitted") -> None:
    """What the UI calls on Submit / Save as draft / Discard."""
    with ui_api(ep.url, key) as c:
        r = c.post(f"/api/v1/records/{record_uuid}/responses",
                   json={"values": {k: {"value": v} for k, v in values.items()}, "status": status})
        assert r.status_code == 201, r.text


def records_by_external_id(ep, key: str, name: str) -> dict[str, dict]:
    return {i["record"]["external_id"]: i["record"] for i in search(ep, key, name)["items"]}
