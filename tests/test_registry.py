"""The one lazy registry (rayrg/registry.py) every registry of rayrg is built on."""

from __future__ import annotations

import sys

import pytest

from rayrg.config import ConfigError
from rayrg.registry import Registry


def test_entries_are_imported_on_first_load_only() -> None:
    sys.modules.pop("json.tool", None)
    reg: Registry = Registry("thing", {"tool": "json.tool:main", "dumps": "json:dumps"})
    assert "json.tool" not in sys.modules  # registering imports nothing
    import json

    assert reg.load("dumps") is json.dumps
    assert "json.tool" not in sys.modules
    assert callable(reg.load("tool")) and "json.tool" in sys.modules
    assert reg.names() == ["tool", "dumps"] and reg["dumps"] == "json:dumps"


def test_unknown_name_is_one_line_listing_the_known_ones() -> None:
    reg: Registry = Registry("dataset format", {"b": "json:dumps", "a": "json:loads"})
    with pytest.raises(ConfigError) as err:
        reg.load("nope")
    assert str(err.value) == "unknown dataset format 'nope'; known: a, b"


def test_replacing_an_entry_drops_the_loaded_object_and_checks_classes() -> None:
    seen = []
    reg: Registry = Registry("x", {"n": "json:dumps"}, check=lambda name, obj: seen.append((name, obj)))
    import json

    assert reg.load("n") is json.dumps and seen == [("n", json.dumps)]
    reg["n"] = json.loads  # an object: checked when registered
    assert seen[-1] == ("n", json.loads) and reg.load("n") is json.loads
    del reg["n"]
    with pytest.raises(ConfigError, match="known: none"):
        reg.load("n")


def test_the_four_registries_share_the_class() -> None:
    from rayrg.data.formats import FORMATS
    from rayrg.envs import registry as envs
    from rayrg.rewards.registry import LABEL_METHODS
    from rayrg.rewards.rgvlm import backends

    for reg in (FORMATS, envs._ENVIRONMENTS, LABEL_METHODS, backends._ENTRIES):
        assert isinstance(reg, Registry)
    with pytest.raises(ConfigError, match="unknown dataset format 'alfred2'; known: alfred, lerobot, minari"):
        FORMATS.load("alfred2")
