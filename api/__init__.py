"""archwatch's HTTP API and console (FastAPI); for now only the acknowledgement page."""
