"""Headless Chromium for the tests that check pages in a real browser (`browser` marker).

`make test` installs Debian's `chromium` when it is missing and runs these tests with
RAYRG_REQUIRE_BROWSER=1, where a missing browser is an error, never a skip (tests/conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "chrome")
                 if shutil.which(n)), None)

# Flags that keep a headless run offline and self-contained (as root in CI: no sandbox; no GPU;
# no QUIC, sync, component updates or background fetches that would reach for the network).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions")


def dump_dom(url: str, profile: Path, budget_ms: int = 10000) -> str:
    """The DOM of `url` after its scripts ran (virtual time), from a fresh profile directory."""
    assert CHROMIUM is not None, "no chromium binary (apt-get install chromium)"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                           "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout
