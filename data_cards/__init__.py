"""Dataset and model cards filled from manifests."""
