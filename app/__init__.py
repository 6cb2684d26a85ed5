"""tuneserve API: FastAPI app, settings, SQL schema, storage. Never imports torch."""
