"""PostgreSQL access for the API and tracker: :func:`migrate` and :func:`create_pool`."""

from .migrate import MIGRATIONS_DIR, create_pool, migrate

__all__ = ["MIGRATIONS_DIR", "create_pool", "migrate"]
