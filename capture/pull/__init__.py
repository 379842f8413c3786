"""The trainer's client: pulling a snapshot over HTTP or from object storage, verified."""
