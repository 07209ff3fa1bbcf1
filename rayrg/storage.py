"""Where outputs live: local paths and storage URIs (``s3://``, ``gs://``, ``abfs://``,
``hdfs://``, ``file://``) behind one :class:`Location`, over ``pyarrow.fs``.

- A local path stays exactly as today (``Path`` semantics, relative to the cwd) unless a
  storage root is set (``RAYRG_STORAGE``, or ``root=`` from an experiment's ``storage:``):
  then a relative path resolves against the root, so a job's ``out: runs/x`` lands on shared
  storage instead of the job's temporary working directory.
- Credentials never come from a URI: S3 uses the standard AWS chain (environment,
  ``~/.aws``, instance role), the endpoint ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``. A
  URI holding ``key:secret@`` is refused, and every string form of it is scrubbed.
- Bad input is one line naming the (scrubbed) URI and what failed, raised by :func:`resolve`
  (unknown scheme, ``s3:/typo``: never a local folder named ``s3:``) or, before any work,
  by :func:`check_writable` (missing credentials, no such bucket, no write permission).
- Multi-node: :func:`claim_shared` / :func:`assert_shared` prove that a writing task sees the
  driver's output location; :func:`refuse_local_on_cluster` and :func:`refuse_relative_in_job`
  refuse up front what would scatter outputs over nodes' own disks.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from rayrg.config import URI_PATTERN, scrub_url
from rayrg.errors import UserError

STORAGE_ENV = "RAYRG_STORAGE"
SHARED_MOUNTS_ENV = "RAYRG_SHARED_MOUNTS"
MARKER_PREFIX = ".rayrg-shared-"
SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")

_URI = URI_PATTERN
# ``s3:/bucket``, ``s3:bucket``, ``gs:x``: a scheme without ``//``. Two letters at least, so
# a Windows drive (``C:``) is not one; ``file:/abs`` is a valid file URI.
_TYPO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):(?!//)")


class StorageError(UserError):
    """A storage location that cannot be used; the message names it (scrubbed) and why."""


def scrub_uri(uri: str | os.PathLike[str]) -> str:
    """``uri`` safe for logs, provenance, manifests and reports: ``key:secret@`` (even with a
    ``/`` in the secret), query and fragment redacted; local paths unchanged."""
    text = os.fspath(uri)
    if _URI.match(text):
        return scrub_url(text)
    typo = _TYPO.match(text)
    if typo and "@" in text:  # ``s3:/key:secret@bucket``: a typo still carries the secret
        prefix = text[:typo.end()] + "/" * (len(text[typo.end():]) - len(text[typo.end():].lstrip("/")))
        scrubbed = scrub_url(f"{typo.group('scheme')}://{text[len(prefix):]}")
        return prefix + scrubbed.split("://", 1)[1]
    return text


def _fail(uri: str, what: str) -> StorageError:
    return StorageError(f"{scrub_uri(uri)}: {what}")


@dataclass(frozen=True)
class Location:
    """One file or folder: ``uri`` (as shown; no credentials), ``fs`` and ``path`` (the
    filesystem's own path: absolute for local, ``bucket/key`` for object stores).

    Immutable and picklable: pass it to Ray tasks as is.
    """

    uri: str
    fs: pafs.FileSystem
    path: str

    def __str__(self) -> str:
        return scrub_uri(self.uri)

    def __hash__(self) -> int:  # pyarrow filesystems are not hashable; a key (shard -> schema)
        return hash((self.uri, self.path))

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"

    def __truediv__(self, part: str | os.PathLike[str]) -> Location:
        part = os.fspath(part).strip("/")
        if not part:
            return self
        sep = "" if self.uri.endswith("/") else "/"
        if self.is_local and not _URI.match(self.uri):
            uri = str(Path(self.uri) / part)
        else:
            uri = f"{self.uri}{sep}{part}"
        return Location(uri, self.fs, f"{self.path.rstrip('/')}/{part}")

    # -- what it is --------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    @property
    def local_path(self) -> Path | None:
        """The local ``Path`` (as given: relative paths stay relative), or None for a URI."""
        if not self.is_local:
            return None
        return Path(self.path) if _URI.match(self.uri) else Path(self.uri)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> Location:
        if self.is_local and not _URI.match(self.uri):
            return Location(str(Path(self.uri).parent), self.fs, str(Path(self.path).parent))
        uri, path = self.uri.rstrip("/"), self.path.rstrip("/")
        return Location(uri.rsplit("/", 1)[0], self.fs, path.rsplit("/", 1)[0])

    def _info(self) -> pafs.FileInfo:
        try:
            return self.fs.get_file_info(self.path)
        except OSError as exc:
            raise _classify(self, exc, "read") from exc

    def exists(self) -> bool:
        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self._info().type == pafs.FileType.Directory

    # -- reading -----------------------------------------------------------------------
    def open_input(self) -> Any:
        """A pyarrow input stream (binary, ``read()``); a missing file is FileNotFoundError."""
        try:
            return self.fs.open_input_stream(self.path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self}: no such file") from None
        except OSError as exc:
            if "not found" in str(exc).lower() or "no such" in str(exc).lower():
                raise FileNotFoundError(f"{self}: no such file") from None
            raise _classify(self, exc, "read") from exc

    def read_bytes(self) -> bytes:
        with self.open_input() as stream:
            return stream.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def ls(self) -> list[Location]:
        """The direct children, sorted by name."""
        selector = pafs.FileSelector(self.path, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise _classify(self, exc, "list") from exc
        return [self / info.path.rstrip("/").rsplit("/", 1)[-1] for info in sorted(infos, key=lambda i: i.path)]

    def glob(self, suffix: str = "") -> list[Location]:
        """Every file below (recursively) whose name ends with ``suffix``, sorted."""
        selector = pafs.FileSelector(self.path, recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(selector)
        except OSError as exc:
            raise _classify(self, exc, "list") from exc
        base = self.path.rstrip("/") + "/"
        return [self / info.path[len(base):] for info in sorted(infos, key=lambda i: i.path)
                if info.type == pafs.FileType.File and info.path.endswith(suffix)
                and info.path.startswith(base)]

    # -- writing -----------------------------------------------------------------------
    def mkdirs(self) -> None:
        try:
            self.fs.create_dir(self.path, recursive=True)
        except OSError as exc:
            raise _classify(self, exc, "create") from exc

    def open_output(self) -> Any:
        """A pyarrow output stream; parent folders made (object stores have none)."""
        try:
            if self.is_local:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            return self.fs.open_output_stream(self.path)
        except OSError as exc:
            raise _classify(self, exc, "write") from exc

    def write_bytes(self, data: bytes) -> None:
        """Atomic: readers see the old content or the new, never a part. Local: a temporary
        file in the same folder renamed over the target; object stores: one PUT is atomic."""
        if self.is_local:
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
            try:
                tmp.write_bytes(data)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            return
        try:
            with self.fs.open_output_stream(self.path) as stream:
                stream.write(data)
        except OSError as exc:
            raise _classify(self, exc, "write") from exc

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        self.write_bytes(text.encode(encoding))

    def delete(self) -> None:
        """Delete one file (a missing one is fine)."""
        try:
            self.fs.delete_file(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if "not found" not in str(exc).lower():
                raise _classify(self, exc, "delete") from exc

    def delete_tree(self) -> None:
        """Delete this folder and everything below it (a missing one is fine)."""
        if not self.exists():
            return
        try:
            self.fs.delete_dir(self.path)
        except OSError as exc:
            raise _classify(self, exc, "delete") from exc


# -- resolving ---------------------------------------------------------------------------
def storage_root(root: str | os.PathLike[str] | None = None) -> str | None:
    """The storage root: ``root`` if given, else ``$RAYRG_STORAGE``, else None."""
    if root is not None and os.fspath(root):
        return os.fspath(root)
    return os.environ.get(STORAGE_ENV) or None


def is_uri(text: str | os.PathLike[str]) -> bool:
    return bool(_URI.match(os.fspath(text)))


def resolve(path_or_uri: str | os.PathLike[str] | Location, *,
            root: str | os.PathLike[str] | None = None) -> Location:
    """A :class:`Location` for a local path or a storage URI; no I/O for local paths.

    A relative local path resolves against the storage root (``root=``, else
    ``$RAYRG_STORAGE``) when one is set, else against the cwd, as a ``Path`` does.
    """
    if isinstance(path_or_uri, Location):
        return path_or_uri
    text = os.fspath(path_or_uri)
    if not text:
        raise StorageError("empty storage path")
    match = _URI.match(text)
    if match:
        return _from_uri(text, match.group("scheme").lower(), match.group("rest"))
    typo = _TYPO.match(text)
    if typo and typo.group("scheme").lower() == "file" and text[5:6] == "/":
        return _local(text[5:], text)
    if typo:
        scheme = typo.group("scheme")
        raise _fail(text, f"not a URI ('{scheme}:' needs '//', e.g. {scheme}://bucket/path) "
                          f"and not a local path (write ./{scrub_uri(text)} for a local folder)")
    base = storage_root(root)
    if base is not None and not Path(text).is_absolute():
        return resolve(base, root=None) / text
    return _local(text, text)


def _local(path: str, uri: str) -> Location:
    return Location(uri, pafs.LocalFileSystem(), os.path.abspath(path))


def _from_uri(uri: str, scheme: str, rest: str) -> Location:
    authority = rest.split("/", 1)[0]
    if scheme not in SCHEMES:
        raise _fail(uri, f"unknown storage scheme '{scheme}://' (supported: local paths, "
                         f"{', '.join(s + '://' for s in SCHEMES)})")
    if scheme == "file":
        if authority not in ("", "localhost"):
            raise _fail(uri, "a file:// URI names a local path (file:///abs/path)")
        return _local("/" + rest.split("/", 1)[1] if "/" in rest else "/", uri)
    at = rest.find("@")
    userinfo = rest[:at] if at >= 0 else ""
    # abfs://container@account... carries the container there: only ``a:b@`` is a credential
    if at >= 0 and (":" in userinfo or ("@" in authority and scheme in ("s3", "gs", "gcs"))):
        raise _fail(uri, "credentials inside a storage URI are not used: give them through "
                         "the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, "
                         "an instance role; GOOGLE_APPLICATION_CREDENTIALS)")
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket or bucket.startswith("/"):
            raise _fail(uri, "no bucket (s3://bucket/path)")
        path = f"{bucket}/{key.strip('/')}".rstrip("/")
        return Location(uri.rstrip("/") if key else uri, _s3_filesystem(bucket), path)
    if scheme in ("gs", "gcs"):
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise _fail(uri, "no bucket (gs://bucket/path)")
        try:
            fs = pafs.GcsFileSystem()
        except Exception as exc:
            raise _fail(uri, f"cannot open Google Cloud Storage: {_short(exc)}") from exc
        return Location(uri, fs, f"{bucket}/{key.strip('/')}".rstrip("/"))
    try:  # hdfs, viewfs, abfs(s): pyarrow's own, where this build has it
        fs, path = pafs.FileSystem.from_uri(uri)
        return Location(uri, fs, path)
    except Exception as exc:
        pyarrow_error = exc
    try:  # fsspec only for what pyarrow lacks (e.g. abfs through adlfs)
        import fsspec

        fsspec_fs, path = fsspec.core.url_to_fs(uri)
        fs = pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs))
        return Location(uri, fs, path)
    except Exception:
        raise _fail(uri, f"cannot open '{scheme}://' storage here: "
                         f"{_short(pyarrow_error)}") from pyarrow_error


def _s3_filesystem(bucket: str) -> pafs.S3FileSystem:
    """pyarrow's S3 with the standard AWS settings; credentials from the AWS chain."""
    kwargs: dict[str, Any] = {}
    ignore = os.environ.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "").lower() == "true"
    endpoint = None if ignore else (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        kwargs["scheme"] = parts.scheme or "https"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region and not endpoint:
        try:  # a bucket lives in one region; asking avoids a redirect error on every call
            region = pafs.resolve_s3_region(bucket)
        except Exception:  # no such bucket / offline: check_writable says which
            region = None
    kwargs["region"] = region or "us-east-1"
    return pafs.S3FileSystem(**kwargs)


# -- checking before any work ---------------------------------------------------------------
_AWS_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
                       "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                       "AWS_ROLE_ARN")


def _aws_credentials_visible() -> bool:
    """Whether any source of the AWS chain other than the instance role is configured."""
    if any(os.environ.get(name) for name in _AWS_CREDENTIAL_ENV):
        return True
    files = [os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or "~/.aws/credentials",
             os.environ.get("AWS_CONFIG_FILE") or "~/.aws/config"]
    return any(Path(f).expanduser().is_file() for f in files)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    text = re.sub(r"\s*\(Request ID: [^)]*\)", "", text)
    return text[:300]


def _classify(location: Location, exc: BaseException, action: str) -> StorageError:
    """One line for a failed storage call: which location, and what failed."""
    text = str(exc)
    upper = text.upper()
    bucket = location.path.split("/", 1)[0]
    if isinstance(location.fs, pafs.S3FileSystem):
        if "NO_SUCH_BUCKET" in upper or ("BUCKET" in upper and "NOT FOUND" in upper):
            return _fail(location.uri, f"bucket '{bucket}' does not exist")
        if "NETWORK_CONNECTION" in upper or "COULD NOT CONNECT" in upper:
            return _fail(location.uri, f"cannot reach the S3 endpoint ({_short(exc)})")
        if not _aws_credentials_visible() and any(w in upper for w in (
                "ACCESS_DENIED", "ACCESSDENIED", "INTERNAL_FAILURE", "HTTP STATUS 500", "UNKNOWN",
                "CREDENTIAL", "FORBIDDEN", "403")):
            return _fail(location.uri, "no AWS credentials found (set AWS_ACCESS_KEY_ID/"
                                       "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or run with an "
                                       "instance role)")
        if any(w in upper for w in ("INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH",
                                    "INVALIDACCESSKEYID", "SIGNATUREDOESNOTMATCH", "EXPIRED")):
            return _fail(location.uri, f"the AWS credentials were rejected ({_short(exc)})")
        if "ACCESS_DENIED" in upper or "ACCESSDENIED" in upper or "403" in upper:
            return _fail(location.uri, f"no permission to {action} here (access denied)")
    if isinstance(exc, PermissionError):
        return _fail(location.uri, f"no permission to {action} here")
    return _fail(location.uri, f"cannot {action}: {_short(exc)}")


def check_writable(location: Location | str | os.PathLike[str]) -> Location:
    """Write and delete a small probe object under ``location`` before any work; one line
    (:class:`StorageError`) naming the location and what failed. Returns the location.

    Local: the folder is made (as the stage would). Object stores: one PUT and one DELETE.
    """
    location = resolve(location)
    probe = location / f".rayrg-probe-{secrets.token_hex(6)}"
    try:
        if location.is_local:
            try:
                Path(location.path).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _classify(location, exc, "create the folder") from exc
        if location.is_local:
            probe.write_bytes(b"rayrg write probe\n")
        else:
            with location.fs.open_output_stream(probe.path) as stream:
                stream.write(b"rayrg write probe\n")
        location.fs.delete_file(probe.path)
    except StorageError:
        raise
    except OSError as exc:
        raise _classify(location, exc, "write") from exc
    return location


# -- Ray helpers ------------------------------------------------------------------------------
def ray_data_args(location: Location | str | os.PathLike[str]) -> tuple[str, pafs.FileSystem | None]:
    """``(path, filesystem)`` for ``ray.data.read_parquet/write_parquet(path, filesystem=fs)``.

    Local: the absolute path and None (Ray Data's default, as today).
    """
    location = resolve(location)
    if location.is_local:
        return location.path, None
    return location.path, location.fs


def train_storage(location: Location | str | os.PathLike[str]) -> tuple[str, pafs.FileSystem | None]:
    """``(storage_path, storage_filesystem)`` for Ray Train/Tune ``RunConfig``."""
    return ray_data_args(location)


# -- multi-node: never write where the next stage cannot read --------------------------------
class NotSharedError(StorageError):
    """An output location that some node of the cluster does not share with the driver."""


def marker(location: Location | str | os.PathLike[str], token: str) -> Location:
    return resolve(location) / f"{MARKER_PREFIX}{token}"


def claim_shared(location: Location | str | os.PathLike[str]) -> str:
    """On the driver: write ``<out>/.rayrg-shared-<token>`` (a new random token per run) and
    return the token for :func:`assert_shared` in the writing tasks."""
    location = resolve(location)
    token = secrets.token_hex(8)
    marker(location, token).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    return token


def release_shared(location: Location | str | os.PathLike[str], token: str) -> None:
    """On the driver, when the stage is done: remove its marker."""
    marker(location, token).delete()


def node_name() -> str:
    """This process's node: IP, hostname and Ray node id (when inside Ray)."""
    host = socket.gethostname()
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
            return f"{ray.util.get_node_ip_address()} ({host}, Ray node {node_id[:12]})"
    except Exception:  # pragma: no cover - naming the node must never fail the check
        pass
    return host


def assert_shared(location: Location | str | os.PathLike[str], token: str) -> None:
    """Inside a writing Ray task: the driver's marker must be visible here, else one line
    (:class:`NotSharedError`) naming this node and the path."""
    location = resolve(location)
    if not location.is_local:
        return  # a URI names the same objects from every node
    if marker(location, token).exists():
        return
    raise NotSharedError(f"{location} is not shared storage: node {node_name()} cannot see the "
                         f"driver's marker {MARKER_PREFIX}{token}; use a URI (s3://…) or a "
                         f"shared mount")


def shared_mounts() -> list[Path]:
    """Folders declared shared by every node (``RAYRG_SHARED_MOUNTS=/mnt/efs:/other``)."""
    value = os.environ.get(SHARED_MOUNTS_ENV, "")
    return [Path(p).resolve() for p in value.split(os.pathsep) if p.strip()]


def is_declared_shared(location: Location) -> bool:
    if not location.is_local:
        return True
    path = Path(location.path).resolve()
    return any(path == mount or mount in path.parents for mount in shared_mounts())


def cluster_shape() -> tuple[int, bool]:
    """``(alive nodes, autoscaling)`` of the connected Ray cluster; ``(1, False)`` if none.

    Autoscaling: autoscaler v2 publishes its node groups (``get_cluster_config``; a worker
    group with ``max_count`` ≠ 0 can add nodes), v1's monitor ``__autoscaling_status``
    (see :func:`_v1_autoscaler`). A cluster whose workers start at 0 has 1 alive node at a
    stage's start, so the node count alone proves nothing.
    """
    import ray

    if not ray.is_initialized():
        return 1, False
    alive = sum(1 for node in ray.nodes() if node.get("Alive"))
    autoscaling = False
    try:  # v2
        from ray._private.state import state

        config = state.get_cluster_config()
        if config is not None:
            autoscaling = any(group.max_count == -1 or group.max_count > group.min_count
                              for group in config.node_group_configs)
    except Exception:  # private API: absent in another Ray version
        pass
    if not autoscaling:
        try:
            from ray._private import ray_constants
            from ray.experimental.internal_kv import _internal_kv_get

            raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
            autoscaling = bool(raw) and _v1_autoscaler(json.loads(raw))
        except Exception:
            pass
    return alive, autoscaling


def _v1_autoscaler(status: dict[str, Any]) -> bool:
    """Whether v1's status comes from a real autoscaler. Every cluster's monitor publishes one,
    a plain ``ray.init``/``ray start`` one too, through the read-only provider, which names
    each node's type ``node_<node id>``; a cluster config's node types have their own names
    (``ray.head.default``, ``cpu_workers``)."""
    report = status.get("autoscaler_report") or {}
    mapping = report.get("node_type_mapping") or {}
    return any(kind != f"node_{node}" for node, kind in mapping.items())


def refuse_local_on_cluster(location: Location | str | os.PathLike[str]) -> None:
    """On the driver, before any work: a plain local path on a cluster of more than one node,
    or an autoscaling one, is refused in one line unless declared shared."""
    location = resolve(location)
    if is_declared_shared(location):
        return
    alive, autoscaling = cluster_shape()
    if alive <= 1 and not autoscaling:
        return
    shape = f"{alive} nodes" + (", autoscaling" if autoscaling else "")
    raise NotSharedError(f"{location} is a local path, but the Ray cluster has {shape}: each node "
                         f"would write to its own disk; use a URI (s3://…), a storage root "
                         f"({STORAGE_ENV}), or declare a shared mount in {SHARED_MOUNTS_ENV}")


def in_ray_job() -> bool:
    """Whether this process is the entry point of ``ray job submit``: the job supervisor
    sets ``RAY_JOB_CONFIG_JSON_ENV_VAR`` for it, and a ``--working-dir`` runs it in Ray's
    temporary ``runtime_resources/working_dir_files``."""
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        return True
    return "runtime_resources/working_dir_files" in Path.cwd().as_posix()


def refuse_relative_in_job(path: str | os.PathLike[str], *,
                           root: str | os.PathLike[str] | None = None) -> None:
    """Inside ``ray job submit``: a relative output path with no storage root would land in
    the job's temporary working directory; refused in one line."""
    text = os.fspath(path)
    if is_uri(text) or Path(text).is_absolute() or storage_root(root) is not None:
        return
    if in_ray_job():
        raise StorageError(f"{text}: a relative output path inside `ray job submit` would be "
                           f"written into the job's temporary working directory ({Path.cwd()}); "
                           f"give an absolute path on shared storage, a URI (s3://…), or a "
                           f"storage root ({STORAGE_ENV})")



# -- one call at a stage's start ---------------------------------------------------------------
def prepare_output(out: str | os.PathLike[str] | Location, *, root: str | None = None) -> Location:
    """At a stage's start, before any work: where its output goes, checked.

    ``resolve`` (a relative path lands under the storage root), then refuse a relative path
    inside ``ray job submit`` with no root, a plain local path on a multi-node or autoscaling
    cluster (unless declared shared), and an unwritable location (unknown scheme, missing
    credentials or bucket, no permission): one line each, naming the location.
    """
    if not isinstance(out, Location):
        refuse_relative_in_job(out, root=root)
    location = resolve(out, root=root)
    refuse_local_on_cluster(location)
    if not location.is_local:
        check_writable(location)
    return location


def open_input(path: str | os.PathLike[str] | Location, *, root: str | None = None,
               what: str = "input") -> Location:
    """An input that must exist: ``resolve`` it, then one line naming it if it does not."""
    location = resolve(path, root=root)
    if not location.exists():
        raise StorageError(f"{location}: no such {what}")
    return location


def local_only(path: str | os.PathLike[str] | Location, what: str, why: str, *,
               output: bool = False) -> Path:
    """A path on the *foreign* side of an import or export (a LeRobot or Minari dataset
    root, the ALFRED data root), which the other format's library opens only as a local
    folder: a storage URI (or a URI typo such as ``s3:/b``) is refused in one line naming
    ``what`` (the option) and ``why``, before anything is made, so no local folder named
    ``s3:`` ever appears. ``file://`` URIs are local. It never resolves against the storage
    root (that root is for rayrg's own outputs). ``output``: a relative path inside
    ``ray job submit`` would land in the job's temporary working directory: refused too."""
    if isinstance(path, Location):
        if path.is_local:
            return Path(path.path)
        path = path.uri
    text = os.fspath(path)
    typo = _TYPO.match(text)
    is_file = text[:7].lower() == "file://" or (typo is not None and typo.group("scheme").lower() == "file")
    if (_URI.match(text) or typo) and not is_file:
        raise StorageError(f"{what} {scrub_uri(text)}: a storage URI, but {why}; give a local path "
                           f"(or a shared mount) and copy it to storage after")
    local = Path(resolve(text, root=None).path) if is_file else Path(text)
    if output and not local.is_absolute() and in_ray_job():
        raise StorageError(f"{what} {text}: a relative output path inside `ray job submit` would be "
                           f"written into the job's temporary working directory ({Path.cwd()}); give "
                           f"an absolute path on shared storage")
    return local


def native(location: str | os.PathLike[str] | Location) -> Path | Location:
    """What a stage hands back and prints: a local ``Path`` as given (relative stays
    relative, so local runs read exactly as before), the :class:`Location` for a URI. Both
    join with ``/`` and print with ``str``."""
    location = resolve(location)
    local = location.local_path
    return local if local is not None else location


def parquet_args(location: str | os.PathLike[str] | Location) -> dict[str, Any]:
    """``path``/``filesystem`` keywords for ``pyarrow.parquet`` readers and writers: a local
    path as itself (as before), an object through its filesystem."""
    location = resolve(location)
    if location.is_local:
        return {"path": location.path, "filesystem": None}
    return {"path": location.path, "filesystem": location.fs}
