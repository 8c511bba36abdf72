"""Embedders: networks that turn media into vectors, with provenance (imported as foleybench.metrics.embedders)."""
