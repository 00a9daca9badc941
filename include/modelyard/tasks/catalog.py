"""Look up published dataset versions: what a training run may consume.

Publishing is ``modelyard.curation``'s job; this module only reads what it wrote
(``datasets/<version>/manifest.json`` and the ``datasets/_by_date`` pointers). A version named
from outside (a trigger Param, an Asset event's extra) is accepted only as the id of a published
version whose validation passed: the id is never joined into a path before it matched
``VERSION_ID``, so ``../x`` or ``/etc`` cannot point training at data the gate never saw.
"""

from __future__ import annotations

import hashlib
import re

from modelyard.curation.publish import by_date_dir
from modelyard.settings import Settings, get_settings
from modelyard.storage import read_json, storage_path

#: A published version id: ``ds-`` and the first 12 hex digits of its content hash.
VERSION_ID = re.compile(r"ds-[0-9a-f]{12}")


class InvalidDatasetVersion(ValueError):
    """A dataset version that is not a published, validated one; the message is one line."""


def published_manifest(version: object, settings: Settings | None = None) -> dict:
    """The manifest of published ``version`` (with its ``path``), checked before it is used.

    Refused with ``InvalidDatasetVersion``: anything but a version id (paths, traversal,
    other strings), an id with no published version, a manifest naming another version or
    content hash, and a version whose GX validation did not pass.
    """
    settings = settings or get_settings()
    if not isinstance(version, str) or not VERSION_ID.fullmatch(version):
        raise InvalidDatasetVersion(
            f"dataset_version {str(version)[:80]!r} is not a dataset version id "
            "(ds- and 12 hex digits, as `modelyard registry status` and the curate_dataset "
            "runs show them)"
        )
    path = storage_path(settings, "datasets", version)
    try:
        manifest = read_json(path / "manifest.json")
    except FileNotFoundError:
        raise InvalidDatasetVersion(
            f"dataset_version {version} is not published under {path.parent}"
        ) from None
    except (OSError, ValueError) as err:
        raise InvalidDatasetVersion(
            f"dataset_version {version}: its manifest cannot be read ({err})"
        ) from None
    if manifest.get("version") != version or not str(manifest.get("content_hash", "")).startswith(
        version.removeprefix("ds-")
    ):
        raise InvalidDatasetVersion(
            f"dataset_version {version}: its manifest names {manifest.get('version')!r}; "
            "the published directory was altered"
        )
    if not (manifest.get("gx") or {}).get("success"):
        raise InvalidDatasetVersion(
            f"dataset_version {version} did not pass the validation gate; it cannot be trained on"
        )
    return {**manifest, "path": str(path)}


def load_manifest(version: str, settings: Settings | None = None) -> dict:
    """The manifest of a published, validated version (see ``published_manifest``)."""
    return published_manifest(version, settings)


def published_by_date(settings: Settings | None = None) -> dict[str, str]:
    """``{partition date: version}`` of every published date, oldest first."""
    root = by_date_dir(settings or get_settings())
    return {p.stem: read_json(p)["version"] for p in sorted(root.glob("*.json"))}


def latest_version(settings: Settings | None = None) -> str:
    """The version published for the most recent partition date."""
    dates = published_by_date(settings)
    if not dates:
        raise FileNotFoundError("no dataset version is published yet: run curate_dataset first")
    return dates[max(dates)]


def version_for_date(day: str, settings: Settings | None = None) -> str | None:
    """The version the partition of ``day`` published, if any."""
    pointer = by_date_dir(settings or get_settings()) / f"{day}.json"
    return read_json(pointer)["version"] if pointer.exists() else None


def run_name_for(run_id: str) -> str:
    """A filesystem-safe run directory name, stable across task retries and one per run id:
    when characters had to be replaced (``manual__...T10:00:00+00:00``), a hash of the id
    keeps ``manual:1`` and ``manual+1`` apart, and ``.`` or ``::`` never name ``runs/``
    itself (another run's checkpoints would be resumed)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")
    if safe and safe == run_id:
        return safe
    digest = hashlib.blake2b(run_id.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{safe or 'run'}-{digest}"
