"""``rayrg browse``: one self-contained HTML page to page through what a label method made.

The page is assembled from the ``browser_section`` declarations
(:class:`~rayrg.rewards.declarations.HtmlSection`) of the label methods that labelled the
dataset: this module names none of them. Which method labelled a dataset is read from its
provenance record (``label <method>``); a dataset without one is offered to every registered
method that declares a browser section, and the first that recognises it wins (else the first
one's one-line reason is the error).

The page needs no server and no network: each section's CSS and JavaScript are inline and
its images ``data:`` URIs. ``<body data-ready="0">`` is set to 1 by a section's script when
it has drawn (tests drive the page in a real browser).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from rayrg.config import ConfigError
from rayrg.contracts.versions import DatasetError
from rayrg.rewards.declarations import BrowseOptions, HtmlSection

log = logging.getLogger(__name__)

_DEFAULTS = BrowseOptions()
DEFAULT_MAX_WINDOWS = _DEFAULTS.max_windows
DEFAULT_PAGE_SIZE = _DEFAULTS.page_size
DEFAULT_IMAGE_SIDE = _DEFAULTS.image_side
DEFAULT_THRESHOLD = _DEFAULTS.threshold
PAGE_FILE = "labels_browser.html"

_LABEL_STAGE = "label "  # provenance stage names of label runs: "label <method>"


def labelled_by(labelled: Path) -> str | None:
    """The label method whose run wrote ``labelled`` (its provenance record), None when unknown."""
    from rayrg.provenance import read_record

    stage = str((read_record(labelled) or {}).get("stage") or "")
    return stage[len(_LABEL_STAGE):] if stage.startswith(_LABEL_STAGE) else None


def browser_sections(labelled: Path, options: BrowseOptions, method: str | None = None) -> list[HtmlSection]:
    """The browser sections of ``labelled``: those of ``method`` (default: the method that
    labelled it), or, when that is unknown, of the first registered method that recognises it."""
    from rayrg.rewards.registry import LABEL_METHODS, get_method

    name = method or labelled_by(labelled)
    if name is not None:
        declared = get_method(name)
        if declared.browser_section is None:
            raise DatasetError(f"{labelled}: label method {name!r} declares no browser section")
        return [declared.browser_section(labelled, options)]
    first: Exception | None = None
    for candidate in LABEL_METHODS.names():
        try:
            declared = get_method(candidate)
        except (ConfigError, ImportError) as exc:  # a method whose optional dependency is missing
            log.debug("browse: method %s not loadable: %s", candidate, exc)
            continue
        if declared.browser_section is None:
            continue
        try:
            return [declared.browser_section(labelled, options)]
        except (DatasetError, ConfigError, FileNotFoundError) as exc:
            first = first or exc
    if first is not None:
        raise first
    raise DatasetError(f"{labelled}: no registered label method has a browser section")


def render_page(title: str, sections: list[HtmlSection]) -> str:
    """One HTML document from the sections (heads into <head>, bodies in order)."""
    head = "\n".join(s.head for s in sections)
    body = "\n".join(f'<section data-section="{html.escape(s.title)}">\n{s.body}\n</section>' for s in sections)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
            f'{head}\n</head>\n<body data-ready="0">\n{body}\n</body></html>\n')


def write_browser(labelled: str | Path, out: str | Path | None = None, *, method: str | None = None,
                  labels: str | Path | None = None, windows: str | Path | None = None,
                  max_windows: int = DEFAULT_MAX_WINDOWS, page_size: int = DEFAULT_PAGE_SIZE,
                  threshold: float = DEFAULT_THRESHOLD, image_side: int | None = DEFAULT_IMAGE_SIDE) -> Path:
    """Write the label browser of ``labelled`` to ``out`` (default ``<labelled>/labels_browser.html``)."""
    labelled = Path(labelled)
    if not labelled.is_dir():
        raise FileNotFoundError(f"{labelled}: no such labelled dataset directory")
    options = BrowseOptions(labels=Path(labels) if labels else None, windows=Path(windows) if windows else None,
                            max_windows=max_windows, page_size=page_size, threshold=threshold,
                            image_side=image_side)
    sections = browser_sections(labelled, options, method)
    out = Path(out) if out else labelled / PAGE_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    title = sections[0].title if len(sections) == 1 else f"rayrg labels: {labelled.name}"
    out.write_text(render_page(title, sections), encoding="utf-8")
    log.info("browse: %.1f MB: %s", out.stat().st_size / 1e6, out)
    return out
