"""Alembic migrations of the alert store (see include/detection/schema.py, which runs them)."""
