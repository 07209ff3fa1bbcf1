"""The one check that a model's weights are on this machine, before any work needs them.

One rule, on the driver (``rayrg run``'s preflight, and each stage before it starts the
actors that load a model):

* a path-like name (``./``, ``/``, ``~``, or anything that exists on disk) must exist;
* a hub id must already be in the local Hugging Face cache, online or offline
  (``HF_HUB_OFFLINE``); otherwise one line says how to download it (``hf download <id>``).

Why refuse an uncached hub id even when the hub is reachable: outputs are keyed to the
model's identity (:mod:`rayrg.models.identity`), and an uncached hub id has none
(``hub:<id>@not-in-local-cache``), so labels made from it would not be tied to the snapshot
that made them. A download from inside the Ray actors would also happen once per actor,
racing on the cache, and a gated repo, a missing token or no network would surface as an
actor dying in its constructor, far from the config key that caused it. Downloading once,
by hand, pins the snapshot and fails at the cause. Nothing here touches the network.
"""

from __future__ import annotations

import os
from pathlib import Path

# Files one of which every snapshot we load has: transformers models, diffusers pipelines,
# processor-only repos.
SNAPSHOT_MARKERS = ("config.json", "model_index.json", "preprocessor_config.json")


def hub_snapshot(repo_id: str) -> Path | None:
    """The local Hugging Face cache's snapshot folder of a hub id's ``main``, or None (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # transformers depends on it; be safe anyway
        return None
    for filename in SNAPSHOT_MARKERS:
        try:
            found = try_to_load_from_cache(repo_id, filename)
        except Exception:  # not a valid repo id (a name of a toy backend, a served name)
            return None
        if isinstance(found, str):
            return Path(found).parent
    return None


def hub_cached(repo_id: str) -> bool:
    """Whether a hub id's files are in the local Hugging Face cache (no network)."""
    return hub_snapshot(repo_id) is not None


def weights_problem(model: str, key: str) -> str | None:
    """The one line saying why ``model`` (the value of config key ``key``) cannot be loaded
    here, or None when its weights are here (see the module docstring for the rule)."""
    if Path(model).expanduser().exists():
        return None
    if model.startswith((".", "/", "~")):
        return f"{key}: model path '{model}' does not exist"
    if hub_cached(model):
        return None
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (f"{key}: model '{model}' is neither a local path nor in the Hugging Face cache (HF_HOME={cache}); "
            f"download it first (hf download {model}) where the hub is reachable, or set {key} to a local "
            "checkpoint directory")


def check_model_weights(model: str, key: str) -> None:
    """Raise :func:`weights_problem`'s line as a :class:`~rayrg.errors.UserError`."""
    from rayrg.errors import UserError

    problem = weights_problem(model, key)
    if problem:
        raise UserError(problem)
