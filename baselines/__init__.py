"""Model families behind the generator interface (imported as ``foleybench.baselines``)."""
