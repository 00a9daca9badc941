"""What can be checked of docker/ without a Docker engine: the compose topology is coherent
and every build target it names exists in the Dockerfile."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
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


# --- Secrets: nothing usable ships in the repository -------------------------------------------

_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")
_SECRET_NAME = re.compile(r"SECRET|PASSWORD|FERNET|JWT|TOKEN")


class MissingVariable(LookupError):
    pass


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Docker Compose's variable interpolation (``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?e}``,
    ``${V?e}``, ``$$``): raises ``MissingVariable`` where compose would refuse to start."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3)
        value = env.get(name)
        unset_or_empty = value is None or (op is not None and op.startswith(":") and not value)
        if op and op.endswith("?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        if op and op.endswith("-") and unset_or_empty:
            return arg
        return value or ""

    return _VAR.sub(one, text)


def _strings(node, path=""):
    """Every string in the compose file with where it is (env values, commands, entrypoints)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value, path)
    elif isinstance(node, str):
        yield path, node


def _secret_env():
    for name, service in _compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if _SECRET_NAME.search(key):
                yield name, key, str(value)


def test_no_secret_has_a_default_or_an_empty_value():
    secrets = list(_secret_env())
    names = {key for _, key, _ in secrets}
    assert {"AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"} <= names
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY"} <= names
    for service, key, value in secrets:
        with pytest.raises(MissingVariable):  # compose refuses to start without it
            _interpolate(value, {})
        assert _interpolate(value, {v: "x" for v in _variables(value)}) == "x", (service, key)


def test_no_password_is_written_into_a_url_or_command():
    userinfo = re.compile(r"://[^\s:/@]+:(\$\{[^}]*\}|[^\s@/]+)@")
    found = [(p, m.group(1)) for p, text in _strings(_compose()) for m in userinfo.finditer(text)]
    assert found  # the database URLs carry a password ...
    for path, password in found:  # ... and it is always a required variable
        assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", password), (path, password)
    commands = [
        text for path, text in _strings(_compose()) if path.endswith(("command", "entrypoint"))
    ]
    assert not any(userinfo.search(command) for command in commands)  # visible in `ps`
    secret = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|_KEY\b", re.IGNORECASE)
    # nor a secret put there from a variable, compose's (${X}) or the container shell's ($${X})
    named = [
        name
        for command in commands
        for name in re.findall(r"\$\$?\{?(\w+)", command)
        if secret.search(name)
    ]
    assert not named, named


def _variables(text: str) -> set[str]:
    return {m.group(1) or m.group(4) for m in _VAR.finditer(text) if m.group(0) != "$$"}


def test_the_documented_one_liner_generates_every_required_secret(tmp_path):
    from cryptography.fernet import Fernet

    header = (DOCKER / "compose.yaml").read_text().split("x-modelyard:")[0]
    command = re.search(r"python3 -c '([^']+)'", header).group(1)
    out = subprocess.run([sys.executable, "-c", command], check=True, capture_output=True)
    env = dict(line.split("=", 1) for line in out.stdout.decode().split())
    required = {
        m.group(1)
        for _, text in _strings(_compose())
        for m in _VAR.finditer(text)
        if m.group(2) == ":?"
    }
    assert required == set(env)
    Fernet(env["AIRFLOW_FERNET_KEY"].encode())  # a valid Fernet key
    assert len(env["AIRFLOW_JWT_SECRET"]) >= 32
    for _, text in _strings(_compose()):
        _interpolate(text, env)  # the whole file starts with them
    ignored = {".gitignore": "docker/.env", ".dockerignore": "docker/.env"}
    for name, entry in ignored.items():
        assert entry in (PROJECT_ROOT / name).read_text().split(), name


# --- The GPU images: llama.cpp and Unsloth's caches --------------------------------------------


def _stage(dockerfile: str, name: str | None) -> str:
    text = (DOCKER / dockerfile).read_text()
    return text if name is None else text.split(f"AS {name}")[1].split("\nFROM ")[0]


@pytest.mark.parametrize(
    ("dockerfile", "stage", "user"),
    [("Dockerfile.trainer-gpu", None, "trainer"), ("Dockerfile", "gpu-worker", "airflow")],
)
def test_gpu_images_point_unsloth_at_a_prebuilt_llama_cpp(dockerfile, stage, user):
    text = (DOCKER / dockerfile).read_text()
    env = dict(re.findall(r"(UNSLOTH_\w+)=(\S+)", _stage(dockerfile, stage)))
    folder = env["UNSLOTH_LLAMA_CPP_PATH"]
    # llama-quantize is built at image build time and lands where unsloth_zoo looks for it.
    assert "--target llama-quantize" in text
    assert f"cp {folder}/build/bin/llama-quantize {folder}/llama-quantize" in text
    assert env["UNSLOTH_LLAMA_CPP_OFFLINE"] == "1" and env["UNSLOTH_AUTO_INSTALL"] == "0"
    assert "requirements-gguf.txt" in _stage(dockerfile, stage)
    cache = env["UNSLOTH_COMPILE_LOCATION"]
    owned = re.findall(rf"chown -R {user}\S* ([^\n\\&]+)", _stage(dockerfile, stage))
    assert any(cache.startswith(path) for line in owned for path in line.split()), owned


def test_unsloth_zoo_is_pinned_to_the_unsloth_release():
    pins = dict(
        re.findall(
            r"^([\w-]+)==(\S+)",
            (PROJECT_ROOT / "trainer" / "requirements-gpu.txt").read_text(),
            re.M,
        )
    )
    assert pins["unsloth_zoo"] == pins["unsloth"] == "2026.10.9"
