"""Serving: an inference worker that batches requests across models on shared backbones."""
