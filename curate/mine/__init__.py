"""Failure mining on production logs (issue 8, in progress): log schema, PII redaction, failure detectors.

Built so far: `logs` (schema, validation with quarantine, ISO-week selection), `redact` (typed
placeholders, Luhn-checked cards, mod-97-checked IBANs), `detect` (every failure reason that fires
for a row), `understand` (k-means clusters with c-TF-IDF terms, embedding drift vs training prompts,
KS length shift, weekly judge trend with a 5% drop alert, per-category failure rates).
Not built yet: the `just mine` runner and reports, judge scoring of log rows, demo logs, the Argilla push.
"""
