"""The tracker: keeps ``jobs`` and ``job_events`` in step with the EVENTS stream.

:mod:`state` is the pure state machine, :mod:`store` writes one event to PostgreSQL,
:mod:`advisories` handles crash loops, :mod:`consumer` runs the NATS loops.
"""
