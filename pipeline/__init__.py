"""Smooth Reading data model: documents, chunking, the EMR stream format, trajectories, corpus shards, metrics."""
