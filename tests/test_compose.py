"""docker-compose.yml, checked by parsing it (no Docker engine runs here)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_fleet_has_its_services() -> None:
    services = _compose()["services"]
    assert set(services) == {
        "redis", "rabbitmq", "postgres", "migrate", "worker-cpu", "worker-gpu",
    }  # fmt: skip
    for name in ("migrate", "worker-cpu", "worker-gpu"):
        assert "build" in services[name]
    assert (ROOT / "Dockerfile").is_file()


def test_redis_persists_and_needs_a_password_from_the_environment() -> None:
    redis = _compose()["services"]["redis"]
    assert "--appendonly yes" in redis["command"]
    assert "--requirepass" in redis["command"]
    assert redis["environment"]["EXPQ_REDIS_PASSWORD"].startswith("${EXPQ_REDIS_PASSWORD")


def test_workers_and_migration_run_expq_against_the_services() -> None:
    services = _compose()["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["worker-cpu"]["command"][:3] == ["worker", "--queues", "cpu,auto"]
    assert services["worker-gpu"]["command"][:3] == ["worker", "--queues", "gpu,auto"]
    for name in ("migrate", "worker-cpu", "worker-gpu"):
        env = services[name]["environment"]
        assert env["EXPQ_BROKER_URL"].startswith(
            "${EXPQ_BROKER_URL:-redis://:${EXPQ_REDIS_PASSWORD"
        )
        assert env["EXPQ_DATABASE_URL"].startswith("postgresql+psycopg://")
    for name in ("worker-cpu", "worker-gpu"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_the_gpu_worker_reserves_an_nvidia_device() -> None:
    [device] = _compose()["services"]["worker-gpu"]["deploy"]["resources"]["reservations"][
        "devices"
    ]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def test_rabbitmq_is_the_alternative_broker_under_a_profile() -> None:
    """Off by default; when on, durable (its data in a volume, under a fixed node name), a
    password from the environment, a vhost of expq's own, and the workers wait for it."""
    services = _compose()["services"]
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["profiles"] == ["rabbitmq"] and rabbitmq["image"].startswith("rabbitmq:")
    assert "profiles" not in services["redis"]
    assert rabbitmq["environment"]["RABBITMQ_DEFAULT_PASS"].startswith("${EXPQ_RABBITMQ_PASSWORD:?")
    assert rabbitmq["environment"]["RABBITMQ_DEFAULT_VHOST"] not in ("", "/")
    assert "hostname" in rabbitmq
    assert any(volume.endswith(":/var/lib/rabbitmq") for volume in rabbitmq["volumes"])
    assert "rabbitmq-data" in _compose()["volumes"]
    assert "healthcheck" in rabbitmq
    for name in ("worker-cpu", "worker-gpu"):
        needs = services[name]["depends_on"]["rabbitmq"]
        assert needs == {"condition": "service_healthy", "required": False}
