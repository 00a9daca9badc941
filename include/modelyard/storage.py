"""The one module that touches storage: a root URL, paths under it, and safe ways to write.

The root (``Settings.storage``) is a plain path, ``file://...`` or ``s3://bucket/prefix``.
``storage_path`` returns a ``pathlib.Path`` for a local root (so local runs keep atomic
renames) and a ``upath.UPath`` for an object store: both support ``/``, ``exists``,
``is_dir``, ``glob``, ``iterdir``, ``read_text`` and ``write_text``.

Why UPath (universal_pathlib over fsspec) and not Airflow's ``ObjectStoragePath``: the latter
*is* a UPath subclass that adds resolving an Airflow connection from the URL's user part. We
need that only when ``storage_aws_conn_id`` is set, so it is done here, lazily, with the Amazon
provider's hook; everything else (the CLI, the trainer launcher, curation worker processes,
tests) stays free of Airflow. Measured on this box: importing ``upath`` + ``s3fs`` costs
~0.5 s; ``airflow.sdk.ObjectStoragePath`` ~2.3 s (it pulls in the task SDK).

Object stores have no atomic rename, so a multi-file artifact is published by uploading its
files under their final prefix and writing the file that makes it visible (a manifest) LAST
(``upload_dir(last=...)``); readers only trust a prefix whose manifest exists. A single
object PUT is atomic on S3, so ``write_json`` is atomic on both kinds of root.

Heavy work (MinHash indexes, GX batches, training) happens in a local scratch dir
(``local_copy``/``scratch``) and is uploaded; on a local root ``local_copy`` is the path
itself (no copy). The local-directory helpers at the bottom (``check_output``,
``scratch_dir``, ``replace_dir``...) keep a local output replaceable without a torn state.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

from modelyard.settings import Settings

if TYPE_CHECKING:
    from upath import UPath

#: A storage location: a local path, or a UPath on an object store.
StoragePath = Union[Path, "UPath"]

#: Bounded S3 client timeouts: an unreachable endpoint fails the task in seconds, not minutes
#: (botocore's defaults are a 60 s connect timeout and retries on top).
S3_CONFIG = {"connect_timeout": 5, "read_timeout": 60, "retries": {"max_attempts": 3}}


class StorageError(RuntimeError):
    """The storage root is missing or unreachable; the message names the URL and the reason."""


def short_hash(digest: str, length: int = 12) -> str:
    """The short form of a hex digest used in content addresses (``ds-<12 hex>``)."""
    return digest[:length]


def protocol(url: str) -> str:
    """``s3``, ``file``...; a plain path is ``file``."""
    from fsspec.utils import get_protocol

    found = get_protocol(str(url))
    return "file" if found in ("file", "local") else found


def is_remote(url: str | StoragePath) -> bool:
    """Whether ``url`` names object storage (s3://...) rather than this machine's disk."""
    return not isinstance(url, Path) and protocol(str(url)) != "file"


def _local(url: str) -> Path:
    return Path(url.removeprefix("file://"))


_OPTIONS: dict[str, dict[str, Any]] = {}


def storage_options(settings: Settings) -> dict[str, Any]:
    """fsspec options of the root: credentials from the environment (botocore's chain, which
    also reads ``AWS_ENDPOINT_URL``), or from the Airflow AWS connection
    ``storage_aws_conn_id`` when set (the Amazon provider's hook, imported only then)."""
    if not is_remote(settings.storage):
        return {}
    conn_id = settings.storage_aws_conn_id
    if conn_id in _OPTIONS:
        return _OPTIONS[conn_id]
    # No listings cache: another worker may publish between two looks at the same prefix.
    options: dict[str, Any] = {"config_kwargs": S3_CONFIG, "use_listings_cache": False}
    if conn_id:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
        credentials = hook.get_credentials()
        options.update(key=credentials.access_key, secret=credentials.secret_key)
        if credentials.token:
            options["token"] = credentials.token
        client_kwargs = {}
        if hook.conn_config.endpoint_url:
            client_kwargs["endpoint_url"] = hook.conn_config.endpoint_url
        if hook.conn_config.region_name:
            client_kwargs["region_name"] = hook.conn_config.region_name
        if client_kwargs:
            options["client_kwargs"] = client_kwargs
    _OPTIONS[conn_id] = options
    return options


def credential_env(settings: Settings) -> dict[str, str]:
    """The root's credentials and endpoint as the AWS environment variables, for a process of
    its own (the trainer reads and mirrors the same root, but knows no Airflow connection)."""
    options = storage_options(settings)
    names = {
        "key": "AWS_ACCESS_KEY_ID",
        "secret": "AWS_SECRET_ACCESS_KEY",
        "token": "AWS_SESSION_TOKEN",
    }
    env = {var: options[key] for key, var in names.items() if options.get(key)}
    client = options.get("client_kwargs", {})
    if client.get("endpoint_url"):
        env["AWS_ENDPOINT_URL"] = client["endpoint_url"]
    if client.get("region_name"):
        env["AWS_DEFAULT_REGION"] = client["region_name"]
    return env


def as_path(url: str, settings: Settings | None = None) -> StoragePath:
    """A path object for ``url`` (a local path or a storage URL, with the root's credentials)."""
    if not is_remote(url):
        return _local(url)
    from upath import UPath

    if settings is None:
        from modelyard.settings import get_settings

        settings = get_settings()
    return UPath(url, **storage_options(settings))


def storage_path(settings: Settings, *parts: str) -> StoragePath:
    """``<storage root>/<parts...>``."""
    return as_path(settings.storage, settings).joinpath(*parts)


def require_root(settings: Settings) -> StoragePath:
    """The root, or ``StorageError`` naming it and why it cannot be used: a configured local
    root must be an existing directory (the embedded default, ``<home>/data``, is created);
    on S3 the bucket must exist and answer with these credentials. A missing prefix under a
    reachable bucket is fine (S3 has no directories)."""
    url = settings.storage
    root = storage_path(settings)
    try:
        if not is_remote(url):
            if not settings.storage_root:
                root.mkdir(parents=True, exist_ok=True)
            if not root.is_dir():
                reason = "not a directory" if root.exists() else "does not exist"
                raise StorageError(f"storage root {url}: {reason}")
            return root
        fs = root.fs
        bucket = root.path.split("/", 1)[0]
        fs.ls(bucket, refresh=True)
    except StorageError:
        raise
    except Exception as err:  # noqa: BLE001 -- botocore/aiohttp raise many types; name it
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StorageError(f"storage root {url} is unreachable: {reason}") from err
    return root


def read_json(path: StoragePath) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def read_text(url: str, settings: Settings | None = None) -> str:
    return as_path(url, settings).read_text(encoding="utf-8")


def write_bytes(path: StoragePath, data: bytes) -> None:
    """Readers never see half a file: local, a temp sibling renamed over ``path``; on an
    object store one PUT, which becomes visible whole."""
    if is_remote(path):
        _put_bytes(path, data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: StoragePath, obj: object) -> None:
    write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def _put_bytes(path: StoragePath, data: bytes) -> None:
    path.fs.pipe_file(path.path, data)


def _put(fs: Any, local: Path, remote: str) -> None:
    """One file upload (a seam the kill-mid-upload test counts calls of)."""
    fs.put_file(str(local), remote)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def upload_dir(
    local: Path, dest: StoragePath, last: Iterable[str] = (), only: Iterable[str] | None = None
) -> None:
    """Copy the files of ``local`` under ``dest``; the relative names in ``last`` go last, in
    that order, so their presence means everything else is there. ``only``: top-level names to
    copy (default all). Local destinations are written with ``write_bytes`` semantics."""
    last = list(last)
    names = None if only is None else set(only) | set(last)
    files = [f for f in _files(local) if names is None or f.relative_to(local).parts[0] in names]
    rel = {f: f.relative_to(local).as_posix() for f in files}
    ordered = [f for f in files if rel[f] not in last]
    ordered += [local / name for name in last if (local / name).is_file()]
    if is_remote(dest):
        fs, base = dest.fs, dest.path.rstrip("/")
        for file in ordered:
            _put(fs, file, f"{base}/{rel.get(file, file.relative_to(local).as_posix())}")
        return
    for file in ordered:
        target = dest / file.relative_to(local)
        write_bytes(target, file.read_bytes())


def download(src: StoragePath, dest: Path) -> Path:
    """Copy the file or the tree under ``src`` to the local ``dest`` (created)."""
    if not is_remote(src):
        if src.is_dir():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
        return dest
    fs, path = src.fs, src.path.rstrip("/")
    if fs.isdir(path):
        dest.mkdir(parents=True, exist_ok=True)
        for remote in fs.find(path):
            target = dest / remote[len(path) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(target))
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(path, str(dest))
    return dest


def remove_tree(path: StoragePath) -> None:
    """Remove the file or the tree at ``path``, if there is anything."""
    if is_remote(path):
        if path.fs.exists(path.path):
            path.fs.rm(path.path, recursive=True)
        return
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def scratch(settings: Settings, *parts: str) -> Path:
    """A local work dir ``<home>/scratch/<parts>`` for heavy work before an upload."""
    path = settings.home.joinpath("scratch", *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def local_copy(path: StoragePath, settings: Settings) -> Iterator[Path]:
    """``path`` as a local path: itself on a local root, else a copy in scratch that is
    removed on exit."""
    if not is_remote(path):
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="copy-", dir=scratch(settings)))
    try:
        yield download(path, tmp / path.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def staged_dir(final: StoragePath, settings: Settings, last: Iterable[str]) -> Iterator[Path]:
    """A local directory to fill; on a clean exit it becomes ``final`` whole, or not at all.

    Local root: a scratch sibling renamed into place (a concurrent writer of the same content
    that won the rename is fine: content-addressed). Object store: a local scratch dir whose
    files are uploaded with ``last`` (the manifest) last. Nothing is published on an error.
    """
    if is_remote(final):
        tmp = Path(tempfile.mkdtemp(prefix="stage-", dir=scratch(settings)))
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = scratch_dir(final)
    try:
        yield tmp
        if is_remote(final):
            upload_dir(tmp, final, last=last)
        else:
            try:
                tmp.rename(final)
            except OSError:
                if not all((final / name).exists() for name in last):
                    raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def local_dir(path: str, mirror: str | None, settings: Settings) -> Iterator[Path]:
    """A directory another machine may have written (a trained adapter): ``path`` when this
    machine has it, else a local copy of ``mirror``, its copy under the storage root."""
    if Path(path).is_dir() or not mirror:
        yield Path(path)
        return
    with local_copy(as_path(mirror, settings), settings) as copy:
        yield copy


def mtime(path: StoragePath) -> float:
    """Newest modification time of ``path`` or of anything under it (objects have no dirs)."""
    if not is_remote(path):
        return path.stat().st_mtime
    times = [
        info.get("LastModified") or info.get("mtime")
        for info in path.fs.find(path.path, detail=True).values()
    ]
    stamps = [t.timestamp() if hasattr(t, "timestamp") else float(t) for t in times if t]
    return max(stamps, default=time.time())


# -- local directories replaced without a torn state --------------------------------------

MARKER = ".modelyard-curation"  # in every curation output: what may be replaced
_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())
_SCRATCH = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.(?P<kind>tmp|old)$")


class UnsafeOutput(ValueError):
    """An output directory whose replacement could destroy data."""


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _real(path: Path, what: str) -> Path:
    """``path`` resolved, or ``UnsafeOutput`` naming it (a symlink loop, a name too long)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symlink loop before Python 3.13
        raise UnsafeOutput(f"cannot resolve the {what} {path}: {err}") from None


def check_output(output: Path, inputs: list[Path], owned: Collection[str]) -> Path:
    """The real path to (re)write ``output`` at, or ``UnsafeOutput``: it may not be, contain
    or lie inside any of ``inputs`` (symlinks and relative paths resolved: list the files a
    directory input reads, since each may link elsewhere), nor replace anything but an empty
    directory or a curation output (one holding ``MARKER``) that holds only ``owned`` names."""
    real = _real(output, "output")
    for source in inputs:
        if _overlaps(real, _real(source, "input")):
            raise UnsafeOutput(
                f"refusing output {output}: it overlaps the input {source}; choose a directory "
                "outside the input"
            )
    try:
        if not real.exists():
            return real
        if not real.is_dir():
            raise UnsafeOutput(f"refusing output {output}: it exists and is not a directory")
        entries = sorted(entry.name for entry in real.iterdir())
    except OSError as err:  # a name too long, a parent that is a file, no permission
        raise UnsafeOutput(f"cannot use the output {output}: {err}") from None
    if MARKER not in entries and entries:
        raise UnsafeOutput(
            f"refusing to replace {output}: it holds files and is not a curation output "
            f"(no {MARKER}); choose a new or empty directory"
        )
    foreign = [name for name in entries if name not in {MARKER, *owned}]
    if foreign:
        raise UnsafeOutput(
            f"refusing to replace {output}: it holds {', '.join(foreign)}, which curation did "
            "not write; move them out first"
        )
    return real


def mark_output(directory: Path, version: str) -> None:
    (directory / MARKER).write_text(json.dumps({"version": version}) + "\n", encoding="utf-8")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_scratch(parent: Path, name: str | None, keep: Collection[Path] = ()) -> None:
    """Remove scratch of ``parent`` that dead processes of this host left: for ``name``, or
    for every name (directories only this tool writes), never what overlaps ``keep`` (the
    inputs: a partition may carry a scratch-like name). An interrupted swap's ``.old`` is
    put back when its directory is missing, not deleted."""
    if not parent.is_dir():
        return
    kept = [path.resolve() for path in keep]
    for entry in parent.iterdir():
        found = _SCRATCH.match(entry.name)
        if not found or found["host"] != _HOST or (name is not None and found["name"] != name):
            continue
        if _alive(int(found["pid"])) or any(_overlaps(entry.resolve(), k) for k in kept):
            continue
        final = parent / found["name"]
        if found["kind"] == "old" and not final.exists():
            os.replace(entry, final)
        else:
            shutil.rmtree(entry, ignore_errors=True)


def scratch_dir(
    final: Path, every_name: bool = False, private: bool = False, keep: Collection[Path] = ()
) -> Path:
    """A fresh sibling of ``final`` to fill before ``replace_dir``; same filesystem, so the
    rename is atomic; 0700 if ``private``. Stale scratch of ``final`` (of any sibling with
    ``every_name``) goes first, sparing ``keep``."""
    remove_stale_scratch(final.parent, None if every_name else final.name, keep)
    tmp = final.with_name(f".{final.name}.{_HOST}-{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, mode=0o700 if private else 0o777)
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a filled scratch dir in for ``final`` (kept intact until the swap)."""
    old = final.with_name(f".{final.name}.{_HOST}-{os.getpid()}.old")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def private_dir(path: Path) -> Path:
    """``path`` and its parent as directories only this user can enter (0700)."""
    for directory in (path.parent, path):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    return path


def private_file(path: Path) -> IO[bytes]:
    """A new file only this user can read (0600 from creation, not chmod-ed after)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def prune_older(root: StoragePath, days: int) -> list[StoragePath]:
    """Remove the ``<root>/<group>/<entry>`` trees last changed ``days`` or more days ago (all
    of them for 0), scratch that dead processes left there, and local groups left empty;
    returns what was removed (scratch aside)."""
    if not root.is_dir():
        return []
    cutoff = time.time() - days * 86400
    removed = []
    for group in root.iterdir():
        if not group.is_dir():
            continue
        if not is_remote(group):
            remove_stale_scratch(group, None)
        for entry in group.iterdir():
            if not _SCRATCH.match(entry.name) and mtime(entry) <= cutoff:
                remove_tree(entry)
                removed.append(entry)
        if not is_remote(group) and not any(group.iterdir()):
            group.rmdir()
    return removed
