"""The user hash's salt is the deployment's own: with a salt every install shares, hashing
guessed e-mails or the IPv4 space would undo the hashes the request log stores."""

from __future__ import annotations

import hashlib
import stat
from concurrent.futures import ThreadPoolExecutor

from modelyard.serving.routing import deployment_salt, user_hash


def test_each_home_makes_its_own_salt_once(tmp_path) -> None:
    path = tmp_path / "a" / "serving" / "user_salt"
    with ThreadPoolExecutor(8) as pool:  # gateways starting at once agree on one salt
        salts = set(pool.map(lambda _: deployment_salt(path), range(16)))
    assert len(salts) == 1 and len(salts.pop()) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert deployment_salt(path) == path.read_text()  # stable across restarts
    assert deployment_salt(tmp_path / "b" / "user_salt") != deployment_salt(path)
    assert [p.name for p in path.parent.iterdir()] == ["user_salt"]  # no drafts left
    old_default = hashlib.sha256(b"modelyard-serving-v1\0alice@example.com").hexdigest()[:16]
    assert user_hash("alice@example.com", deployment_salt(path)) != old_default
