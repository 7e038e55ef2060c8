"""The ARForge processes the embedded stack runs, and the environment they get.

Services are ``python -m <module>`` processes configured only through ``ARFORGE_*``
environment variables (see :mod:`arforge.shared.settings`). A worker runs when its package
is installed (``importlib.util.find_spec``), so a machine without the GPU packages simply
has no splatting / ai workers.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .supervisor import ChildSpec

# (child name, module run with `python -m`, critical?)
CORE = (("api", "arforge.api", True), ("tracker", "arforge.api.tracker", True))
WEBHOOKS = ("webhooks", "arforge.webhooks", False)
WORKERS = (
    ("photogrammetry", "arforge.photogrammetry"),
    ("mesh", "arforge.mesh"),
    ("splatting", "arforge.splatting"),
    ("ai", "arforge.ai"),
)


def runnable(module: str) -> bool:
    """True when ``python -m module`` can start: the package and its ``__main__`` exist."""
    try:
        return importlib.util.find_spec(module + ".__main__") is not None
    except ModuleNotFoundError:
        return False


def installed_workers() -> list[str]:
    """Names of the workers whose packages are installed, in start order."""
    return [name for name, module in WORKERS if runnable(module)]


@dataclass(frozen=True)
class Endpoints:
    """Where the children find each other and their files."""

    nats_url: str
    database_url: str
    api_host: str
    api_port: int
    data_dir: Path

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


def child_env(ep: Endpoints, name: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for child ``name``: the caller's, plus the stack's endpoints.

    Endpoints always win; storage root and worker workdir are only set when the caller did
    not configure them (so ``ARFORGE_STORAGE__BACKEND=s3`` plus its settings pass through).
    """
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "ARFORGE_NATS_URL": ep.nats_url,
            "ARFORGE_DATABASE_URL": ep.database_url,
            "ARFORGE_API_URL": ep.api_url,
            "ARFORGE_API_HOST": ep.api_host,
            "ARFORGE_API_PORT": str(ep.api_port),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("ARFORGE_STORAGE__ROOT", str((ep.data_dir / "storage").resolve()))
    env.setdefault("ARFORGE_WORKER__WORKDIR", str((ep.data_dir / "work" / name).resolve()))
    return env


def service_specs(
    ep: Endpoints, workers: list[str], critical_workers: frozenset[str] = frozenset()
) -> list[ChildSpec]:
    """Supervisor entries for API, tracker, webhooks (if installed) and ``workers``.

    All of them are restarted when they die once the stack runs (``ChildSpec.restart``).
    """
    py = sys.executable
    specs = []
    for name, module, critical in CORE:
        argv = [py, "-m", module]
        specs.append(
            ChildSpec(
                name=name, argv=argv, env=child_env(ep, name), critical=critical, restart=True
            )
        )
    wname, wmodule, wcritical = WEBHOOKS
    if runnable(wmodule):
        specs.append(
            ChildSpec(
                name=wname,
                argv=[py, "-m", wmodule],
                env=child_env(ep, wname),
                critical=wcritical,
                restart=True,
            )
        )
    modules = dict(WORKERS)
    for name in workers:
        specs.append(
            ChildSpec(
                name=name,
                argv=[py, "-m", modules[name]],
                env=child_env(ep, name),
                critical=name in critical_workers,
                restart=True,
                # A worker drains its running job on SIGTERM (settings.worker.drain_grace_s).
                stop_timeout=float(os.environ.get("ARFORGE_WORKER__DRAIN_GRACE_S", "30")) + 5,
            )
        )
    return specs
