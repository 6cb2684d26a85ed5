"""Webhooks: a tenant's endpoints, told when its jobs and sweeps end (docs/webhooks.md)."""
