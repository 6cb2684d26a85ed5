"""Training: data, the loop, callbacks, metrics, device and pooling helpers."""
