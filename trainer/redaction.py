"""Keep credentials out of everything written down: config files, MLflow params and artifacts,
model cards and logs.

A tracking or storage URI may carry a password (``postgresql://user:secret@host/db``, a
``?password=`` query, a presigned ``X-Amz-Signature``). Files and artifacts get the URI with the
secret replaced by ``***``; log lines get every known secret value replaced. Standard library
only: the Airflow-side launcher uses it too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

MASK = "***"
_SECRET_QUERY = re.compile(r"pass|secret|token|signature|credential|key", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
# Read as SQLAlchemy reads a database URL: the password runs from the user's ``:`` to the next
# ``@``, so it may hold a raw ``/``, ``?`` or ``#`` that ``urlsplit`` would take for the path,
# query or fragment. Matched on the text for that reason, not on ``urlsplit``'s parts.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)([^@\s]*)@")
_QUERY_PAIR = re.compile(r"([?&])([^=&#\s]*)=([^&#\s]*)")


def _is_secret(key: str, value: str) -> bool:
    return bool(value) and bool(_SECRET_QUERY.search(unquote(key)))


def secrets_in(url: str) -> list[str]:
    """The secret parts of ``url`` as written and percent-decoded: the userinfo password and
    secret-looking query values (``password=``, ``token=``, ``X-Amz-Signature=``...)."""
    userinfo = _USERINFO.match(url)
    raw = [userinfo.group(2)] if userinfo and userinfo.group(2) else []
    raw += [value for _, key, value in _QUERY_PAIR.findall(url) if _is_secret(key, value)]
    return sorted({form for value in raw for form in (value, unquote(value))})


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``."""
    url = _USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@" if m.group(2) else m.group(0), url)
    return _QUERY_PAIR.sub(
        lambda m: f"{m.group(1)}{m.group(2)}={MASK}" if _is_secret(*m.group(2, 3)) else m.group(0),
        url,
    )


def redact(value: Any) -> Any:
    """``value`` (a string or nested dicts/lists of them) with every URL in it redacted."""
    if isinstance(value, str):
        return _URL.sub(lambda m: redact_url(m.group(0)), value)
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def scrubber(*urls: str | None):
    """A function that masks every secret of ``urls`` (and any URL with a password) in a line."""
    secrets = sorted({s for url in urls if url for s in secrets_in(url)}, key=len, reverse=True)

    def scrub(line: str) -> str:
        for secret in secrets:
            line = line.replace(secret, MASK)
        return redact(line)

    return scrub
