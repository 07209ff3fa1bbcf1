"""Registrations from outside rayrg, for processes that look an entry up by name.

A module that registers an environment (or a backend) at import does so in the process that
imports it. Ray workers and ``rayrg`` subprocesses look environments up by the name a dataset
or a task stores, so they import the modules named in ``RAYRG_PLUGINS`` (comma-separated, e.g.
``RAYRG_PLUGINS=mypkg.envs``) the first time a name is missing. Local Ray workers and
subprocesses inherit the variable from the process that starts them.
"""

from __future__ import annotations

import importlib
import os

PLUGINS_ENV = "RAYRG_PLUGINS"
_loaded: set[str] = set()


def load_plugins() -> list[str]:
    """Import the modules named in ``RAYRG_PLUGINS`` not imported yet; the names imported."""
    names = [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    new = [n for n in names if n not in _loaded]
    for name in new:
        importlib.import_module(name)
        _loaded.add(name)
    return new
