"""What can be checked of docker/ without a Docker engine: the compose topology is coherent
and every build target it names exists in the Dockerfile."""

from __future__ import annotations

import re

import yaml

from modelyard.airflow_env import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_build_targets_exist_in_dockerfile():
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", (DOCKER / "Dockerfile").read_text(), re.M))
    services = _compose()["services"]
    targets = {s["build"]["target"] for s in services.values() if "build" in s}
    assert targets and targets <= stages


def test_gpu_worker_serves_only_the_gpu_queue_with_a_gpu_reservation():
    gpu = _compose()["services"]["airflow-worker-gpu"]
    assert "--queues gpu" in gpu["command"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_every_airflow_process_shares_one_metadata_db_and_broker():
    services = _compose()["services"]
    airflow = {name: s for name, s in services.items() if name.startswith("airflow-")}
    assert {
        "airflow-scheduler",
        "airflow-apiserver",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-worker-gpu",
    } <= set(airflow)
    conns = {s["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] for s in airflow.values()}
    assert len(conns) == 1 and next(iter(conns)).startswith("postgresql")
    assert all(
        s["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" for s in airflow.values()
    )


def test_cpu_image_never_pulls_a_cuda_torch():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    airflow_stage = dockerfile.split("AS gpu-worker")[0]
    assert "whl/cpu" in airflow_stage and "torch==2.13.0" in airflow_stage
