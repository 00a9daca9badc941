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
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
_SECRET_QUERY = re.compile(r"pass|secret|token|signature|credential|key", re.IGNORECASE)
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def _secret_query_values(query: str) -> list[str]:
    pairs = (item.partition("=") for item in query.split("&"))
    return [value for key, _, value in pairs if value and _SECRET_QUERY.search(unquote(key))]


def secrets_in(url: str) -> list[str]:
    """The secret parts of ``url`` as written and percent-decoded: the userinfo password and
    secret-looking query values (``password=``, ``token=``, ``X-Amz-Signature=``...)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL (e.g. an invalid port): nothing to find
        return []
    raw = ([password] if password else []) + _secret_query_values(parts.query)
    return sorted({form for value in raw for form in (value, unquote(value))})


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``."""
    if not secrets_in(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = "&".join(
        f"{key}={MASK}" if value and _SECRET_QUERY.search(unquote(key)) else item
        for item in parts.query.split("&")
        for key, _, value in [item.partition("=")]
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


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
