"""Typed stage configs: loaded from YAML, validated on load, dumped next to outputs.

Every stage has one config class deriving from :class:`StageConfig`. Unknown keys are
rejected (a typo in a YAML file is an error, not a silently ignored setting).

Whatever leaves the process (a YAML next to an output, provenance in ``metadata.json``, a
log line) goes through :func:`scrub_secrets` / :meth:`StageConfig.to_public_dict`;
``to_dict`` keeps every value and is only for handing a config to a worker.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

C = TypeVar("C", bound="StageConfig")


class ConfigError(ValueError):
    """A config file or value that cannot be used; the message says which and why."""


REDACTED = "<redacted>"
# Fields whose every value is redacted: free-form request parts where providers put
# credentials under names no rule can foresee (``Authorization``, ``x-goog-api-key``, ...).
OPAQUE_FIELDS = frozenset({"extra_body", "headers"})
# A name whose words include one of these holds a credential (``api_key``, ``hf_token``,
# ``client_secret``, ``x-api-key``, ``Authorization``); matched by word so ``max_tokens``
# or ``cache_key_version`` style counters ("tokens", "keys") are not caught by accident.
_SECRET_WORDS = frozenset({"key", "apikey", "token", "secret", "password", "passwd", "pwd",
                           "passphrase", "auth", "authorization", "credential", "credentials",
                           "cookie", "signature", "bearer"})
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _words(name: str) -> list[str]:
    # camelCase, snake_case, kebab-case and dotted names alike: "xApiKey" -> x, api, key
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_name(name: str) -> bool:
    """True for a field name that says it holds a credential (key/token/secret/password...)."""
    words = _words(name)
    return any(w in _SECRET_WORDS for w in words) or "apikey" in "".join(words)


def scrub_url(url: str) -> str:
    """``url`` without credentials: user:password@ and the query string and fragment are
    redacted (``?key=...`` is how several APIs take keys)."""
    head, sep, rest = url.partition("://")
    if sep and ":" in rest.split("@", 1)[0] and "@" in rest:  # key:secret@, the secret may hold '/'
        url = f"{head}://{REDACTED}@{rest.split('@', 1)[1]}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, REDACTED if parts.query else "",
                       REDACTED if parts.fragment else ""))


def _is_env_name_field(name: str, value: Any) -> bool:
    # ``api_key_env: GEMINI_API_KEY`` names a variable; the name is provenance, not a secret
    return name.lower().endswith("_env") and isinstance(value, str) and bool(_ENV_NAME.fullmatch(value))


def scrub_secrets(obj: Any, opaque: Collection[str] = OPAQUE_FIELDS) -> Any:
    """A copy of ``obj`` (JSON-like: dicts, lists, scalars) safe to write or log.

    Redacted: every value under a field named in ``opaque`` (keys kept, so provenance still
    shows *which* extra fields were sent), every field whose name says key/token/secret/
    password (at any depth), and credentials in URLs (userinfo, query string, fragment).
    ``opaque=()`` redacts by name only: what the answer cache key hashes, so a rotated
    credential is still a cache hit while ``extra_body: {top_k: 5}`` is not.
    """
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for name, value in obj.items():
            key = str(name)
            if key in opaque:
                out[name] = _redact_all(value)
            elif is_secret_name(key) and value is not None and not _is_env_name_field(key, value):
                out[name] = REDACTED
            else:
                out[name] = scrub_secrets(value, opaque)
        return out
    if isinstance(obj, (list, tuple)):
        return [scrub_secrets(v, opaque) for v in obj]
    if isinstance(obj, str) and _URL.match(obj):
        return scrub_url(obj)
    return obj


def secret_values(obj: Any) -> set[str]:
    """The credential strings inside ``obj`` (what :func:`scrub_secrets` would redact), for
    blanking them out of free text such as error messages."""
    found: set[str] = set()

    def walk(raw: Any, public: Any) -> None:
        if isinstance(raw, dict) and isinstance(public, dict):
            for k, v in raw.items():
                walk(v, public.get(k))
        elif isinstance(raw, (list, tuple)) and isinstance(public, list):
            for r, p in zip(raw, public, strict=False):
                walk(r, p)
        elif isinstance(raw, str) and raw != public:
            found.add(raw)
            if _URL.match(raw):
                parts = urlsplit(raw)
                found.update(x for x in (parts.query, parts.fragment, parts.netloc.rpartition("@")[0]) if x)
        # numbers and booleans under opaque fields are settings (top_k: 5), not credentials

    walk(obj, scrub_secrets(obj))
    return found


def redact_text(text: str, secrets: Collection[str]) -> str:
    # longest first, so a key inside a longer secret (a URL) goes with it
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:  # redacting "1" or "on" out of every message would garble it
            text = text.replace(secret, REDACTED)
    return text


def _redact_all(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _redact_all(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact_all(v) for v in obj]
    return None if obj is None else REDACTED


# A storage URI (``s3://bucket/x``); rayrg.storage parses URIs with this same pattern.
URI_PATTERN = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$", re.DOTALL)


def _read_config_text(path: str | Path, what: str) -> tuple[str, str]:
    """(text, name to show) of a config file: a local path, or a storage URI (``s3://…``, a
    job's config kept beside its outputs) read with pyarrow's filesystem, as rayrg.storage
    does (that module builds on this one, so the read is here)."""
    text = os.fspath(path)
    if not URI_PATTERN.match(text) or text.lower().startswith("file://"):
        local = Path(text[7:] if text.lower().startswith("file://") else text)
        if not local.is_file():
            raise ConfigError(f"{what} not found: {local}")
        return local.read_text(), str(local)
    shown = scrub_url(text)
    import pyarrow.fs as pafs

    try:
        fs, inner = pafs.FileSystem.from_uri(text)
        if fs.get_file_info(inner).type != pafs.FileType.File:
            raise ConfigError(f"{what} not found: {shown}")
        with fs.open_input_stream(inner) as stream:
            return stream.read().decode(), shown
    except ConfigError:
        raise
    except Exception as exc:  # unknown scheme, credentials, network: one line, no secret
        raise ConfigError(f"{what} {shown}: cannot be read: {scrub_url(str(exc).splitlines()[0])}") from exc


def read_yaml_mapping(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """The mapping at the top of the YAML file ``path`` (a local path or a storage URI);
    one-line ConfigError when it is absent, unreadable, not valid YAML or not a mapping
    (``what`` names the file when it is absent)."""
    text, shown = _read_config_text(path, what)
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{shown}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{shown}: expected a mapping at top level, got {type(data).__name__}")
    return data


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @classmethod
    def from_yaml(cls: type[C], path: str | Path, **overrides: Any) -> C:
        data = read_yaml_mapping(path)
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "<dict>") -> C:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            # Without the offending values: a key pasted into the wrong field would otherwise
            # be printed (pydantic's message quotes every input) and end up in logs.
            lines = [f"  {'.'.join(map(str, e['loc'])) or '<top>'}: {e['msg']} [{e['type']}]"
                     for e in exc.errors(include_url=False, include_input=False, include_context=False)]
            raise ConfigError(f"{source}: invalid {cls.__name__}:\n" + "\n".join(lines)) from None

    def to_dict(self) -> dict[str, Any]:
        """Every value, credentials included: for handing the config to a worker, never to disk."""
        return self.model_dump(mode="json")

    def to_public_dict(self) -> dict[str, Any]:
        """The config as written to disk or logged: :func:`scrub_secrets` applied."""
        return scrub_secrets(self.to_dict())

    def to_yaml(self, path: Any) -> Any:
        """Write the public config (a scrubbed copy does not load back where secrets were) to a
        local path or a :class:`rayrg.storage.Location` (anything with ``write_text``; duck-typed:
        storage imports this module)."""
        if not isinstance(path, (str, os.PathLike)) and hasattr(path, "write_text"):
            path.write_text(yaml.safe_dump(self.to_public_dict(), sort_keys=True))
            return path
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_public_dict(), sort_keys=True))
        return path
