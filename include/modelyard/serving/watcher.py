"""Following the registry: the production and canary aliases become the gateway's routes.

Every ``poll_seconds`` the aliases are read from MLflow. A version an alias moved to is
downloaded and loaded onto the backend in the background while the old routes keep serving;
only a loaded version is swapped in, by replacing the immutable route table in one assignment.
A version that fails to download or load never takes traffic: the failure is logged and counted
(``modelyard_serving_load_failures_total``), production keeps its previous version, the canary
arm is closed, and the version is retried after ``load_retry_seconds`` (an unreachable
upstream is not the version's failure: that is retried at every poll). A version no alias
names any more finishes its in-flight requests (up to ``drain_seconds``), then is unloaded.
A removed ``canary`` alias therefore stops receiving traffic at the next poll. A removed
``production`` alias keeps the last production serving: an empty registry is no reason to
answer nothing. The registry reads and downloads run in a child process
(:mod:`modelyard.serving.worker`), not on a thread competing with the requests for the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from modelyard.serving.backends import AdapterError, Backend
from modelyard.serving.metrics import GatewayMetrics
from modelyard.serving.routing import ALIASES, PRODUCTION, Deployment, Routes
from modelyard.serving.worker import Worker
from modelyard.settings import Settings

log = logging.getLogger(__name__)


class AliasWatcher:
    def __init__(self, settings: Settings, backend: Backend, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.backend = backend
        self.metrics = metrics
        self.routes = Routes()
        self._loaded: dict[str, Deployment] = {}
        self._failed: dict[str, float] = {}  # version -> monotonic time of its last failure
        self._retiring: dict[str, asyncio.Task] = {}
        # MLflow reads and downloads run in a child process: see modelyard.serving.worker.
        self.registry = Worker("modelyard-registry-reads", warm=import_registry)

    def adapter_name(self, version: str) -> str:
        return f"{self.settings.registered_model}-v{version}"

    def owns(self, adapter: str) -> bool:
        return any(d.adapter == adapter for d in self._loaded.values())

    async def run(self) -> None:
        while True:
            try:
                await self.poll()
            except Exception:  # a bug here must not stop the gateway following the registry
                log.exception("alias watch: poll failed, routes unchanged")
            await asyncio.sleep(self.settings.serving.poll_seconds)

    async def poll(self) -> None:
        await self.backend.refresh()
        try:
            aliases = await asyncio.to_thread(self.registry.call, read_aliases, self.settings)
        except Exception as exc:  # noqa: BLE001 - a registry outage must not stop serving
            self.metrics.poll_errors.inc()
            log.warning("registry poll failed, routes unchanged: %s", exc)
            return
        await self.reconcile(aliases)

    async def reconcile(self, aliases: dict[str, str]) -> None:
        wanted = {alias: aliases.get(alias) for alias in ALIASES}
        current = self.routes.production
        if wanted[PRODUCTION] is None and current is not None:
            wanted[PRODUCTION] = current.version  # see the module docstring
        versions = sorted({v for v in wanted.values() if v})
        alias_of = {v: next(a for a, w in wanted.items() if w == v) for v in versions}
        ready = await asyncio.gather(*(self._ensure(v, alias_of[v]) for v in versions))
        deployments = dict(zip(versions, ready, strict=True))
        routes = self.routes
        for alias, version in wanted.items():
            old = routes.get(alias)
            new = deployments.get(version) if version else None
            if new is None and alias == PRODUCTION:
                new = old  # a production that cannot load leaves the previous one serving
            if new is not old:
                routes = routes.with_alias(alias, new)
                self.metrics.routed(alias, old and old.version, new and new.version)
                log.info(
                    "%s now routes to version %s (was %s)",
                    alias,
                    new.version if new else "none",
                    old.version if old else "none",
                )
        self.routes = routes  # the swap: one assignment, seen whole by every later request
        self._retire(routes.deployments())

    async def _ensure(self, version: str, alias: str) -> Deployment | None:
        """The loaded deployment of ``version``, loading it if needed; None if it cannot be."""
        if version in self._retiring:
            await self._retiring[version]
        deployment = self._loaded.get(version)
        if deployment is not None and deployment.adapter in self.backend.adapters():
            return deployment
        failed_at = self._failed.get(version)
        if failed_at is not None:
            if time.monotonic() - failed_at < self.settings.serving.load_retry_seconds:
                return None
        name = self.adapter_name(version)
        try:
            path = await asyncio.to_thread(
                self.registry.call, fetch_version, self.settings, version, self.backend.base_model
            )
            await self.backend.load(name, str(path))
        except AdapterError as exc:
            if exc.status == 502:  # the upstream is down or not up yet: not the version's fault
                log.warning("version %s (%s) waits for the upstream: %s", version, alias, exc)
                return None
            return self._failed_load(version, alias, exc)
        except Exception as exc:  # noqa: BLE001 - whatever breaks, this version takes no traffic
            return self._failed_load(version, alias, exc)
        self._failed.pop(version, None)
        log.info("loaded version %s as adapter %s", version, name)
        return self._loaded.setdefault(version, Deployment(version, name))

    def _failed_load(self, version: str, alias: str, exc: Exception) -> None:
        """Counted, logged, and left alone for ``load_retry_seconds``."""
        self._failed[version] = time.monotonic()
        self.metrics.load_failures.labels(alias, version).inc()
        log.error("version %s (%s) failed to load and takes no traffic: %s", version, alias, exc)

    def _retire(self, in_use: set[Deployment]) -> None:
        for version, deployment in list(self._loaded.items()):
            if deployment not in in_use:
                del self._loaded[version]
                self._retiring[version] = asyncio.create_task(self._unload(version, deployment))

    async def _unload(self, version: str, deployment: Deployment) -> None:
        try:
            if not await deployment.drained(self.settings.serving.drain_seconds):
                log.warning(
                    "version %s still had %d requests after %.0f s; unloading anyway",
                    version,
                    deployment.inflight,
                    self.settings.serving.drain_seconds,
                )
            await self.backend.unload(deployment.adapter)
            log.info("unloaded version %s", version)
        except Exception as exc:  # noqa: BLE001 - a leftover adapter costs memory, not traffic
            log.warning("could not unload version %s: %s", version, exc)
        finally:
            self._retiring.pop(version, None)


def import_registry() -> None:
    """The registry child's warm-up: MLflow's imports (2-4 s on two busy cores) run beside the
    base model's load when the gateway starts the child early, not before its first poll."""
    import modelyard.registry.artifacts  # noqa: F401 - MlflowClient, Model, download_artifacts


def read_aliases(settings: Settings) -> dict[str, str]:
    """The versions ``production`` and ``canary`` name now; {} before the model exists."""
    from mlflow.exceptions import MlflowException

    from modelyard.registry.artifacts import client_for

    try:
        model = client_for(settings).get_registered_model(settings.registered_model)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    return {alias: str(v) for alias, v in model.aliases.items() if alias in ALIASES}


def fetch_version(settings: Settings, version: str, base_model: str | None) -> Path:
    """Download ``version`` and check it fits the backend's base model; the adapter's path."""
    from mlflow.models import Model

    from modelyard.registry.artifacts import FLAVOR, local_model_dir

    local = local_model_dir(settings, version)
    flavor = Model.load(str(local / "MLmodel")).flavors.get(FLAVOR)
    if flavor is None:
        raise ValueError(f"version {version} has no {FLAVOR} flavor: not a modelyard adapter")
    if base_model is not None and not _same_model(flavor["base_model"], base_model):
        raise ValueError(
            f"version {version} adapts {flavor['base_model']}, this gateway serves {base_model}"
        )
    return local / flavor["adapter"]


def _same_model(a: str, b: str) -> bool:
    """Equal hub names, or paths to the same directory."""
    if a == b:
        return True
    pa, pb = Path(a), Path(b)
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
