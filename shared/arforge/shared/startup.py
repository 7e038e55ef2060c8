"""Start-up failures of a service, said in one sentence instead of a traceback.

A service that cannot reach its database or NATS server, or finds one it cannot use, stops
at once; the person starting it needs to know which setting to fix, not where in asyncpg
the error was raised. Anything not recognised here keeps its traceback (it is a bug).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from . import aio

T = TypeVar("T")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def explain(exc: BaseException, *, database_url: str, nats_url: str) -> str | None:
    """One sentence for ``exc`` if it is a known start-up failure, else ``None``."""
    from .bus import ServerTooOld

    kind = type(exc)
    module, name = kind.__module__, kind.__name__
    db = redact(database_url)
    if isinstance(exc, ServerTooOld):
        return str(exc)
    if module.startswith("asyncpg"):
        if name == "InvalidCatalogNameError":
            return (
                f"PostgreSQL has no such database ({exc}) at {db}; create it (createdb) or "
                "point ARFORGE_DATABASE_URL at another"
            )
        if name in ("InvalidPasswordError", "InvalidAuthorizationSpecificationError"):
            return f"PostgreSQL refused the login for {db} ({exc}); check ARFORGE_DATABASE_URL"
        return None
    if module.startswith("nats"):
        if name in ("NoServersError", "TimeoutError", "ConnectionClosedError"):
            return (
                f"cannot reach the NATS server at {nats_url} ({exc or name}); start one "
                "(`arforge up` runs its own) or set ARFORGE_NATS_URL"
            )
        return None
    if isinstance(exc, OSError | TimeoutError):
        return (
            f"cannot connect ({exc or type(exc).__name__}); is PostgreSQL up at {db} "
            f"(ARFORGE_DATABASE_URL) and NATS at {nats_url} (ARFORGE_NATS_URL)?"
        )
    return None


def run_service(
    service: str,
    main: Callable[[], Coroutine[Any, Any, T]],
    *,
    database_url: str,
    nats_url: str,
) -> T:
    """``aio.run(main())``; a known start-up failure exits with code 2 and one line
    ``arforge.<service>: <sentence>`` on stderr (see :func:`explain`)."""
    try:
        return aio.run(main())
    except Exception as e:
        why = explain(e, database_url=database_url, nats_url=nats_url)
        if why is None:
            raise
        print(f"arforge.{service}: {why}", file=sys.stderr)
        raise SystemExit(2) from None
