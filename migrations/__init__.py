"""Alembic revisions for expq's schema."""
