"""The ARForge HTTP API (FastAPI), its PostgreSQL schema and the event tracker process.

Entry points: ``python -m arforge.api`` (uvicorn) and ``python -m arforge.api.tracker``.
"""
