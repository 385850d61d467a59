"""Failure mining on production logs (docs/mine.md): `python -m sftloop.curate.mine run|demo-logs`.

`logs` (schema, validation with quarantine, ISO-week selection), `redact` (typed placeholders, the one
privacy choke point), `detect` (every failure reason that fires for a row; refusal and truncation are
`sftloop/rules.py`, shared with the training filters), `understand` (k-means clusters with c-TF-IDF
terms, embedding drift vs training prompts, KS length shift, weekly judge trend with a 5% drop alert,
per-category failure rates), `run` (the weekly run: judge and uncertainty scoring, reports), `queue`
(failures prepared for the Argilla failures queue), `demo_logs` (demo logs made by the prod model).
"""
