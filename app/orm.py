"""Every ORM class, imported in one place so that ``Base.metadata`` is complete (Alembic)."""

from app.datasets.orm import Dataset
from app.db import Base
from app.jobs.orm import Job, JobEvent, JobMetric
from app.models.orm import Model
from app.sweeps.orm import Sweep
from app.tenants.orm import ApiKey, Tenant

__all__ = ["ApiKey", "Base", "Dataset", "Job", "JobEvent", "JobMetric", "Model", "Sweep", "Tenant"]
