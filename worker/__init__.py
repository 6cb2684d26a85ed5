"""Celery worker side of tuneserve: everything that touches torch."""
