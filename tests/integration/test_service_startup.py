"""Services that cannot start say why in one line (exit 2), and stop when told to while
they wait for NATS."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from arforge.shared.startup import explain, redact
from tests.conftest import PG_ADMIN_URL, free_port

SERVICES = ["arforge.api.tracker", "arforge.webhooks", "arforge.api"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARFORGE_")}
    return {**env, "ARFORGE_LOG_JSON": "true", **extra}


@pytest.mark.parametrize("module", SERVICES)
def test_a_missing_database_is_one_line_and_exit_2(module: str, nats_server) -> None:  # type: ignore[no-untyped-def]
    missing = f"arforge_absent_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{missing}"
    run = subprocess.run(
        [sys.executable, "-m", module],
        env=_env(ARFORGE_DATABASE_URL=url, ARFORGE_NATS_URL=nats_server.url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith(f"{module}: PostgreSQL has")
    assert f'database "{missing}" does not exist' in lines[-1]
    assert "Traceback" not in run.stderr


def test_the_tracker_stops_on_sigterm_while_nats_is_unreachable(pg_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "arforge.api.tracker"],
        env=_env(ARFORGE_DATABASE_URL=pg_url, ARFORGE_NATS_URL=f"nats://127.0.0.1:{free_port()}"),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(3)  # migrated, pool open, retrying NATS
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read() if proc.stderr else ""
        assert "NATS connection problem; retrying" in err
        assert err.count("NATS connection problem") == 1  # not a line (or traceback) per retry
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_redact_and_unknown_errors() -> None:
    assert redact("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert explain(ValueError("bug"), database_url="x", nats_url="y") is None
    why = explain(
        ConnectionRefusedError(111, "refused"),
        database_url="postgresql://a:b@h/d",
        nats_url="nats://n",
    )
    assert why is not None and "a:***@h" in why and "nats://n" in why
