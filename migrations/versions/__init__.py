"""Migration scripts (Alembic loads every file here except this one)."""
