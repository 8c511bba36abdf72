"""Metrics (imported as ``foleybench.metrics``): functional math, streaming metrics, embedders."""
