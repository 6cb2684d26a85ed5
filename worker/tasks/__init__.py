"""Thin Celery tasks: each calls one implementation function, imported when it runs."""
