"""Alembic migrations of the state database; run by ``StateDB.migrate`` (no ini file needed)."""
