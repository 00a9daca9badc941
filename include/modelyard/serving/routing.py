"""Which loaded version answers a request: production, or the canary for a sticky share of users.

A user is hashed once (salted SHA-256; the request log stores this hash, never the name). The
canary bucket is a second hash of that user hash *and the canary version*: one user sees one
model for the life of a canary, and each new canary draws a fresh share of users instead of
always the same unlucky 10 %. Requests without ``user`` are keyed by the client address (the
first ``X-Forwarded-For`` hop behind a proxy, else the peer), so one client sees one model.

The route table is an immutable :class:`Routes` replaced by one assignment on the event loop,
so a request sees the old table or the new one, never half of a swap.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PRODUCTION = "production"
CANARY = "canary"
ALIASES = (PRODUCTION, CANARY)


def deployment_salt(path: Path) -> str:
    """The salt kept at ``path`` (0600), made at random on first use. A salt every install
    shares would let anyone undo a user hash (an e-mail, an IP address) by hashing guesses;
    gateways on one home share the file, others set ``serving.user_salt`` to one value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd, draft_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
        draft = Path(draft_name)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
        try:
            os.link(draft, path)  # atomic and refusing to replace: two first starts agree
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text(encoding="utf-8").strip()


def user_hash(key: str, salt: str) -> str:
    """16 hex digits: stable across processes and restarts (unlike Python's ``hash``)."""
    return hashlib.sha256(f"{salt}\0{key}".encode()).hexdigest()[:16]


def canary_point(user: str, canary_version: str) -> float:
    """A uniform point in [0, 1) for this user and this canary version."""
    digest = hashlib.sha256(f"{user}\0{canary_version}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(eq=False)
class Deployment:
    """A loaded version: the adapter name the backend knows it by, and its in-flight requests.

    The counter lets a replaced version finish what it started before its adapter is unloaded.
    """

    version: str
    adapter: str
    inflight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    def acquire(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def release(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def drained(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


@dataclass(frozen=True)
class Routes:
    production: Deployment | None = None
    canary: Deployment | None = None

    def get(self, alias: str) -> Deployment | None:
        return self.production if alias == PRODUCTION else self.canary

    def with_alias(self, alias: str, deployment: Deployment | None) -> Routes:
        if alias == PRODUCTION:
            return Routes(deployment, self.canary)
        return Routes(self.production, deployment)

    def deployments(self) -> set[Deployment]:
        return {d for d in (self.production, self.canary) if d is not None}

    def choose(self, user: str, canary_share: float) -> tuple[str, Deployment | None]:
        """(alias, deployment) for this user; a canary equal to production is no canary."""
        canary = self.canary
        if (
            canary is not None
            and (self.production is None or canary.version != self.production.version)
            and canary_point(user, canary.version) < canary_share
        ):
            return CANARY, canary
        return PRODUCTION, self.production
