"""Publishing snapshots to S3-compatible object storage, and reading them back."""
