"""Use cases. No FastAPI here: the API layer calls these, and so do background tasks."""
