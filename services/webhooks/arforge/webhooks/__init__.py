"""ARForge webhooks: the dispatcher (``python -m arforge.webhooks``) and its pure helpers.

Modules: ``signing`` (Standard Webhooks sign/verify), ``ssrf`` (address policy and a
guarded resolver), ``client`` (one bounded HTTP attempt), ``policy`` (retry schedule),
``events`` (internal event -> public payload and subscription matching), ``store``
(PostgreSQL), ``dispatcher`` (event consumer + delivery scheduler).
"""
