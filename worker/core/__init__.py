"""The lowest layer of the worker: examples and padded batches, devices and precision,
pooling token states, and loading a base model as a classifier or an encoder. It imports no
other worker package, so features, training, strategies and serving can all build on it."""
