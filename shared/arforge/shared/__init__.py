"""ARForge platform library shared by every service.

Sub-packages: :mod:`settings`, :mod:`logging`, :mod:`contracts` (job specs, events),
:mod:`bus` (NATS JetStream topology and publishing), :mod:`runtime` (the worker),
:mod:`isolation` (compute in a killable child process group), :mod:`storage`.
"""
