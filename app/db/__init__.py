"""Persistence: SQLAlchemy tables, the engine, and small repository functions."""
