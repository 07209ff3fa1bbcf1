"""RG-VLM backends by ``backend.type``: one registry, one ``register_backend`` line each.

A backend is one module (its config class, its Backend class with its Ray plan; see
:class:`~rayrg.rewards.rgvlm.backends.base.Backend`) plus its line below. Built-in entries
are ``"module:Class"`` strings, imported when first needed; the modules import their SDKs
only inside the actors that construct them. The typed ``backend`` field of
:class:`~rayrg.rewards.rgvlm.config.RGVLMConfig` is rebuilt from this registry whenever an
entry is added, so a backend registered elsewhere (a plugin, a test module) validates in
YAML configs like a built-in one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayrg.registry import Registry

if TYPE_CHECKING:
    from rayrg.rewards.rgvlm.backends.base import Backend

_ENTRIES: Registry[type[Backend]] = Registry(
    "RG-VLM backend", unknown="no RG-VLM backend named {name!r}",
    check=lambda name, cls: _check_type(name, cls))
_LISTENERS: list[Callable[[], None]] = []


def register_backend(name: str, backend: str | type[Backend]) -> None:
    """Register ``backend`` (a ``"module:Class"`` path, or the class) as ``backend.type: name``.

    A class is checked now; a path when it is first imported (the config union imports all).
    """
    _ENTRIES[name] = backend  # a class is checked here (the registry's check)
    for listener in list(_LISTENERS):
        listener()


def on_register(listener: Callable[[], None]) -> None:
    """Call ``listener`` after every later registration (the config rebuilds its union)."""
    _LISTENERS.append(listener)


def backend_names() -> list[str]:
    return list(_ENTRIES)


def backend_class(name: str) -> type[Backend]:
    return _ENTRIES.load(name)


def _check_type(name: str, cls: type[Backend]) -> None:
    declared = cls.config_class.model_fields["type"].default
    if declared != name:
        raise TypeError(f"backend {name!r}: {cls.config_class.__name__}.type is {declared!r}, not {name!r}")


def build_backend(config: Any, share: float = 1.0, **kwargs: Any) -> Backend:
    """The backend for an :class:`~rayrg.rewards.rgvlm.config.RGVLMConfig`.

    ``share`` is this actor's fraction of the configured rate limits.
    """
    cls = backend_class(config.backend.type)
    return cls(config.backend, config.decoding, max_parse_attempts=config.max_parse_attempts,
               share=share, **kwargs)


register_backend("openai", "rayrg.rewards.rgvlm.backends.openai_http:OpenAIBackend")
register_backend("gemini", "rayrg.rewards.rgvlm.backends.gemini:GeminiBackend")
register_backend("transformers", "rayrg.rewards.rgvlm.backends.hf:TransformersBackend")
register_backend("vllm", "rayrg.rewards.rgvlm.backends.vllm:VLLMBackend")
