"""The training contract shared by the API, sweeps and the worker: task names, strategy
configs and hyperparameters. Pure pydantic; nothing here imports the training stack."""
