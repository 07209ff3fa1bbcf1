"""``rayrg browse``: the label browser page (:mod:`rayrg.report.browse`)."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    from rayrg.report.browse import (
        DEFAULT_IMAGE_SIDE,
        DEFAULT_MAX_WINDOWS,
        DEFAULT_PAGE_SIZE,
        DEFAULT_THRESHOLD,
        PAGE_FILE,
    )

    p = sub.add_parser("browse", help="write one self-contained HTML page to browse what a label method made (its browser section)")
    p.add_argument("labelled", type=str, help="labelled dataset directory (the output of a label run whose method has a browser section)")
    p.add_argument("--method", help="label method whose browser section to show (default: the one that labelled it)")
    p.add_argument("--out", type=str, help=f"HTML file to write (default <labelled>/{PAGE_FILE})")
    p.add_argument("--labels", type=str, help="labels table directory (default: the run's, <labelled>/_labels)")
    p.add_argument("--windows", type=str, help="windows dataset directory (default: the run's, <labelled>/_windows)")
    p.add_argument("--max-windows", type=int, default=DEFAULT_MAX_WINDOWS,
                   help=f"embed at most this many windows, the first by episode and step (default {DEFAULT_MAX_WINDOWS}); "
                        "every embedded window's image is in the file, so its size grows with this")
    p.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE,
                   help=f"windows per page (default {DEFAULT_PAGE_SIZE})")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help=f"a transition is predicted good when score/10 >= this (default {DEFAULT_THRESHOLD}, "
                        "as in the reward report)")
    p.add_argument("--image-side", type=int, default=DEFAULT_IMAGE_SIDE,
                   help=f"downscale grid images to at most this many pixels a side (default {DEFAULT_IMAGE_SIDE}; "
                        "0: unchanged)")
    p.set_defaults(func=_browse)


def _browse(args: argparse.Namespace) -> int:
    from rayrg.report.browse import write_browser

    out = write_browser(args.labelled, args.out, method=args.method, labels=args.labels, windows=args.windows,
                        max_windows=args.max_windows, page_size=args.page_size, threshold=args.threshold,
                        image_side=args.image_side or None)
    print(f"browse: {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0
