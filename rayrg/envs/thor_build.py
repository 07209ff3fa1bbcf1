"""Finding AI2-THOR's Unity build, before any Controller is made (no ai2thor import at load).

ai2thor downloads its Unity build at run time. :func:`check_thor_build` finds a pre-placed
build (``local_executable_path`` / ``$RAYRG_THOR_EXECUTABLE``, or
``~/.ai2thor/releases/thor-<platform>-<commit>/``) or probes the download with a short
timeout and otherwise raises :class:`ThorUnavailableError` saying how to provide one, so an
offline machine fails in about a second, never hangs and never falls back.
:func:`missing_build` is the same check as one line: the ``alfred-thor`` environment's
declared need (:mod:`rayrg.envs.registry`), which ``rayrg run``'s preflight asks before any
work.
"""

from __future__ import annotations

import ctypes.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rayrg.envs.thor_config import EXECUTABLE_ENV, ThorConfig


class ThorUnavailableError(RuntimeError):
    """No usable AI2-THOR build (or ai2thor itself) on this machine; the message says how to get one.

    ``problems`` lists what is missing, ``build_dir`` is where a pre-placed build would be
    (None when ai2thor, which names the build, is not installed) and ``url`` its download."""

    def __init__(self, message: str, problems: list[str] | None = None, build_dir: Path | None = None,
                 url: str | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message.splitlines()[0]]
        self.build_dir = build_dir
        self.url = url


def resolve_platform(config: ThorConfig) -> str:
    if config.platform != "auto":
        return config.platform
    return "Linux64" if (config.x_display or os.environ.get("DISPLAY")) else "CloudRendering"


def releases_dir() -> Path:
    """Where ai2thor looks for (and unpacks) builds: ``~/.ai2thor/releases``."""
    return Path(os.path.expanduser("~")) / ".ai2thor" / "releases"


def how_to(platform: str, commit: str, url: str, problems: list[str]) -> str:
    build = f"thor-{platform}-{commit}"
    return (
        "AI2-THOR is not available on this machine:\n"
        + "".join(f"  - {p}\n" for p in problems)
        + "Provide a build in one of these ways:\n"
        f"  1. On a machine with internet access, keep thor.allow_download on: the first start "
        f"downloads the ~800 MB build ({url}) into {releases_dir()}/.\n"
        f"  2. Pre-place it: download {url} elsewhere and unzip it to {releases_dir() / build}/ "
        "(the folder name must match; ai2thor then never touches the network).\n"
        "  3. Point thor.local_executable_path (or $RAYRG_THOR_EXECUTABLE) at the Unity "
        "executable of an unpacked build (ai2thor runs it on an X display: set DISPLAY or "
        "thor.x_display, e.g. under Xvfb).\n"
        "Platforms: CloudRendering is headless and needs Vulkan (libvulkan1 and a GPU driver); "
        "Linux64 needs an X server with GLX. Install ai2thor with: pip install 'rayrg[thor]'."
    )


def _unavailable(platform: str, commit: str, url: str, problems: list[str]) -> ThorUnavailableError:
    return ThorUnavailableError(how_to(platform, commit, url, problems), problems,
                                releases_dir() / f"thor-{platform}-{commit}", url)


def check_thor_build(config: ThorConfig) -> dict[str, Any]:
    """Where the build comes from (``kind``: local_executable / pre_placed / download), or
    :class:`ThorUnavailableError` at once. Never starts Unity; the only network access is one
    HEAD request with ``download_probe_timeout_s`` when no build is on disk."""
    try:
        import ai2thor.build
    except ImportError as exc:
        raise ThorUnavailableError(
            f"ai2thor is not installed ({exc}). Install it with: pip install 'rayrg[thor]' "
            "(ai2thor>=5,<6), then provide a Unity build (see rayrg.envs.thor_build).",
            ["ai2thor is not installed (pip install 'rayrg[thor]')"]) from exc
    commit = ai2thor.build.COMMIT_ID or "unknown"
    if config.local_executable_path:
        path = Path(config.local_executable_path).expanduser()
        if path.is_file() and os.access(path, os.X_OK):
            return {"kind": "local_executable", "path": str(path), "platform": "Linux64", "commit": commit}
        platform = "Linux64"
        url = ai2thor.build.Build(platform, commit, False, str(releases_dir())).url
        raise _unavailable(platform, commit, url, [f"local_executable_path {path} is not an executable file"])

    platform = resolve_platform(config)
    url = ai2thor.build.Build(platform, commit, False, str(releases_dir())).url
    problems = []
    if platform == "CloudRendering" and ctypes.util.find_library("vulkan") is None:
        problems.append("CloudRendering needs the Vulkan loader (libvulkan.so); none was found")
    if platform == "Linux64" and not (config.x_display or os.environ.get("DISPLAY")):
        problems.append("Linux64 needs an X display; neither thor.x_display nor $DISPLAY is set")
    build_dir = releases_dir() / f"thor-{platform}-{commit}"
    if build_dir.is_dir():
        kind = {"kind": "pre_placed", "path": str(build_dir)}
    else:
        problems.append(f"no pre-placed build at {build_dir}")
        if not config.allow_download:
            problems.append("thor.allow_download is off")
        else:
            reason = probe_download(url, config.download_probe_timeout_s)
            if reason:
                problems.append(f"the build cannot be downloaded: {reason}")
            elif len(problems) == 1:  # only the missing local copy, which ai2thor will fetch
                problems = []
        kind = {"kind": "download", "url": url}
    if problems:
        raise _unavailable(platform, commit, url, problems)
    return {**kind, "platform": platform, "commit": commit}


def probe_download(url: str, timeout_s: float) -> str | None:
    """None when ``url`` answers 200 to a HEAD request within ``timeout_s``, else why not."""
    import requests

    try:
        response = requests.head(url, timeout=timeout_s)
    except Exception as exc:  # DNS failure, refused, timeout: all mean no download here
        return f"{url} is unreachable ({type(exc).__name__}: {exc})"
    if response.status_code != 200:
        return f"{url} answered HTTP {response.status_code}"
    return None



def missing_build(settings: Mapping[str, Any]) -> str | None:
    """The ``alfred-thor`` environment's need, asked by ``rayrg run``'s preflight with the
    experiment's ``evaluation.env_settings``: None when a build is there (or will download),
    else one line saying what is missing and how to give it."""
    config = ThorConfig.from_dict(dict(settings), source="env_settings")
    try:
        check_thor_build(config)
    except ThorUnavailableError as exc:
        where = exc.build_dir or releases_dir() / f"thor-{resolve_platform(config)}-<ai2thor's commit>"
        source = f"unzip {exc.url} into {where}/" if exc.url else f"unpack the build into {where}/"
        return (f"no AI2-THOR build ({'; '.join(exc.problems)}); give one: set local_executable_path "
                f"(or ${EXECUTABLE_ENV}) to the Unity executable of an unpacked build, or {source}")
    return None
