"""compose.yaml and the Dockerfiles, checked by reading them (Docker cannot run here)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

COMPOSE = REPO / "compose.yaml"
WORKERS = {"photogrammetry", "mesh", "splatting", "ai"}
GPU = {"splatting", "ai"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_every_service_is_there(compose: dict[str, Any]) -> None:
    names = set(compose["services"])
    core = {"nats", "postgres", "minio", "minio-init", "api", "tracker", "webhooks"}
    assert core | WORKERS <= names


def test_start_order_is_gated_by_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = cond["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{dep} has no healthcheck ({name})"
            else:
                assert condition == "service_completed_successfully", (name, dep, condition)
                assert services[dep].get("restart") == "no", f"{dep} is not a one-shot job"
    for name in ("tracker", "webhooks", *WORKERS):
        deps = services[name]["depends_on"]
        assert deps["api"]["condition"] == "service_healthy", name  # migrations + topology
        assert deps["nats"]["condition"] == "service_healthy", name
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_nats_has_jetstream_and_a_health_endpoint(compose: dict[str, Any]) -> None:
    nats = compose["services"]["nats"]
    cmd = nats["command"]
    assert "--jetstream" in cmd and cmd[cmd.index("--http_port") + 1] == "8222"
    assert any(":8222/healthz" in part for part in nats["healthcheck"]["test"])
    major, minor = (int(x) for x in re.findall(r"nats:(\d+)\.(\d+)", nats["image"])[0])
    assert (major, minor) >= (2, 10)
    assert "pg_isready" in " ".join(compose["services"]["postgres"]["healthcheck"]["test"])


def test_gpu_workers_need_the_profile_and_an_nvidia_device(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        devices = (
            svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        )
        if name in GPU:
            assert svc.get("profiles") == ["gpu"], name
            assert devices and devices[0]["driver"] == "nvidia"
            assert "gpu" in devices[0]["capabilities"]
        else:
            assert "gpu" not in (svc.get("profiles") or []), name
            assert not devices, name


def test_services_share_one_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("api", "tracker", "webhooks", *WORKERS):
        env = services[name]["environment"]
        assert env["ARFORGE_NATS_URL"] == "nats://nats:4222", name
        assert env["ARFORGE_DATABASE_URL"].endswith("@postgres:5432/arforge"), name
        assert env["ARFORGE_STORAGE__BACKEND"] == "s3", name
        assert env["ARFORGE_STORAGE__ENDPOINT_URL"] == "http://minio:9000", name
    assert services["api"]["environment"]["ARFORGE_API_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", ["api", "tracker", "webhooks", *sorted(WORKERS)])
def test_each_image_installs_shared_and_its_own_distribution_only(
    compose: dict[str, Any], name: str
) -> None:
    build = compose["services"][name]["build"]
    assert build["context"] == "."
    dockerfile = REPO / build["dockerfile"]
    text = dockerfile.read_text()
    own = dockerfile.parent.relative_to(REPO).as_posix()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M), dockerfile
    copies = re.findall(r"^COPY (\S+) ", text, re.M)
    assert copies == ["shared", own], (dockerfile, copies)
    install = re.findall(r"^RUN pip install (.+?)(?: &&|$)", text, re.M)
    assert install == [f"/src/shared /src/{own}"], install
    assert re.search(r"^USER arforge$", text, re.M), "images must not run as root"
    module = {"api": "arforge.api", "tracker": "arforge.api.tracker"}.get(name, f"arforge.{name}")
    cmd = compose["services"][name].get("command") or re.findall(r"^CMD (.+)$", text, re.M)[-1]
    assert module in str(cmd)
