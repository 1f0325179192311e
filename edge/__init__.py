"""Community Edge: the runtime core (config, model, hub, store, sync, pull API, web UI, CLI)."""

__version__ = "0.1.0"
