"""sftloop shared contract: chat-record schema, assets, model registry, settings.

Nothing else lives here: `curate`, `train` and `evaluate` meet in files (dataset
versions, `models.toml`), never in each other's internals.
"""

__version__ = "0.1.0"
