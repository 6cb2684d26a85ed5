"""The API's resources, each in a sync and an async flavour."""

from tuneserve.resources.datasets import AsyncDatasets, Datasets
from tuneserve.resources.jobs import AsyncJobs, Jobs
from tuneserve.resources.keys import AsyncBaseModels, AsyncKeys, BaseModels, Keys
from tuneserve.resources.models import AsyncModels, Models
from tuneserve.resources.sweeps import AsyncSweeps, Sweeps

__all__ = [
    "AsyncBaseModels",
    "AsyncDatasets",
    "AsyncJobs",
    "AsyncKeys",
    "AsyncModels",
    "AsyncSweeps",
    "BaseModels",
    "Datasets",
    "Jobs",
    "Keys",
    "Models",
    "Sweeps",
]
