"""archwatch gateway: site model, Reading type, pipeline, spool, storage, state database, CLI."""

__version__ = "0.1.0"
