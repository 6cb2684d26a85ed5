"""Every ORM class, imported in one place so that ``Base.metadata`` is complete (Alembic)."""

from app.datasets.orm import Dataset
from app.db import Base
from app.jobs.orm import Job, JobEvent, JobMetric
from app.models.export_orm import ModelExport
from app.models.orm import Model
from app.sweeps.orm import Sweep
from app.tenants.orm import ApiKey, Tenant
from app.webhooks.orm import WebhookDelivery, WebhookEndpoint

__all__ = [
    "ApiKey",
    "Base",
    "Dataset",
    "Job",
    "JobEvent",
    "JobMetric",
    "Model",
    "ModelExport",
    "Sweep",
    "Tenant",
    "WebhookDelivery",
    "WebhookEndpoint",
]
