"""Strategy implementations, registered by name (see ``registry``)."""
