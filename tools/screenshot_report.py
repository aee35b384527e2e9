"""Render an envaudit HTML report to a PNG with headless chromium, small enough for the docs.

    envaudit check --golden G --format html -o report.html
    python tools/screenshot_report.py report.html docs/html-report-xla.png

The page is opened from disk (it is self-contained: nothing is fetched), drawn at ``--width``
CSS pixels in a window ``--height`` tall, the blank bottom of the window is cut off, and the
image is reduced to ``--colors`` colours (the report's flat colours survive; its scene images
lose little), so a long report stays a few hundred kilobytes. ``--hide`` takes CSS selectors to
leave out of the picture (``visibility: hidden``, so the layout stays where it was) and
``--only-top`` keeps the page down to the first element a selector matches (e.g.
``#detections``) by cutting the document there; ``--section`` keeps only one section of the
report, from its heading (an id: ``detections``) to the next one.

Constraints: chromium runs with a throwaway profile and no network services (no sync, no
component updates, no background networking); the tests (``tests/test_html_report.py``) use
``chromium_args`` and ``find_chromium`` from here, so the two open pages the same way. Exit 2
with one line on stderr where chromium is missing or fails. Pillow comes with matplotlib.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TIMEOUT = 120  # seconds: a cold chromium on a loaded 2-core machine
WHITE_BELOW = 250  # a row whose every channel is at least this is blank page
# The page's flat colours kept exactly (a report uses a few dozen: text, rules, the
# status colours, tints); the scene images share the rest of the palette.
EXACT_COLOURS = 64


def find_chromium() -> str | None:
    """Debian's chromium (or chromium-browser), or None where none is installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_args(browser: str, profile: Path) -> list[str]:
    """A headless chromium with a throwaway profile and no network services."""
    return [browser, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}"]


def prepared(page: str, hide: Sequence[str], only_top: str | None,
             section: str | None = None) -> str:
    """The page with the hidden selectors' CSS added, and cut before ``only_top``'s element
    (an id: ``#detections``), closing the document there; or, ``section``, only the report's
    section whose heading has that id, to the next ``<h2>``."""
    if hide:
        css = ",".join(hide) + "{visibility:hidden}"
        page = page.replace("</style>", css + "</style>", 1)
    if only_top:
        marker = f'id="{only_top.lstrip("#")}"'
        at = page.find(marker)
        if at < 0:
            raise SystemExit(f"screenshot_report: no element {only_top} in the page")
        page = page[: page.rfind("<", 0, at)] + "</body></html>\n"
    if section:
        at = page.find(f'id="{section.lstrip("#")}"')
        if at < 0:
            raise SystemExit(f"screenshot_report: no element {section} in the page")
        end = page.find("<h2", at)
        body = page.index("<body>") + len("<body>")
        kept = page[page.rfind("<", 0, at): end if end > 0 else page.rindex("</body>")]
        page = page[:body] + kept + "</body></html>\n"
    return page


def screenshot(page: Path, out: Path, width: int, height: int, colors: int) -> int:
    """Draw ``page`` into ``out``; the PNG's size in bytes."""
    from PIL import Image

    browser = find_chromium()
    if browser is None:
        raise SystemExit("screenshot_report: chromium is not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="envaudit-shot-") as tmp:
        raw = Path(tmp) / "raw.png"
        proc = subprocess.run(
            [*chromium_args(browser, Path(tmp) / "profile"), f"--screenshot={raw}",
             f"--window-size={width},{height}", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if not raw.is_file():
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"screenshot_report: chromium drew nothing: {last}")
        with Image.open(raw) as image:
            rgb = image.convert("RGB")
    rgb = rgb.crop((0, 0, rgb.width, _content_bottom(rgb)))
    _with_flat_colours_kept(rgb, colors).save(out, optimize=True)
    return out.stat().st_size


def _with_flat_colours_kept(rgb: Any, colors: int) -> Any:
    """The picture in ``colors`` colours, the page's most used ones kept exact (background,
    text, the status colours, the noise band) and the rest spent on what is left (the scene
    images): a status colour must not drift toward a scene's green. Each colour goes to its
    nearest palette entry (Pillow's own mapping rounds colours first, so even white drifts)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(rgb).reshape(-1, 3)
    values, inverse, counts = np.unique(pixels, axis=0, return_inverse=True, return_counts=True)
    exact = values[np.argsort(counts)[::-1][:EXACT_COLOURS]]
    rest = rgb.quantize(colors=colors - len(exact), method=Image.Quantize.MEDIANCUT)
    shades = np.asarray(rest.getpalette()[: 3 * (colors - len(exact))]).reshape(-1, 3)
    table = np.concatenate([exact, shades]).astype(np.int64)
    nearest = np.empty(len(values), dtype=np.uint8)
    for start in range(0, len(values), 4096):  # bounded memory: 4096 colours x the palette
        chunk = values[start:start + 4096].astype(np.int64)
        nearest[start:start + 4096] = ((chunk[:, None, :] - table[None]) ** 2).sum(2).argmin(1)
    image = Image.fromarray(nearest[inverse.reshape(-1)].reshape(np.asarray(rgb).shape[:2]), "P")
    image.putpalette(table.astype(np.uint8).flatten().tolist())
    return image


def _content_bottom(image: Any) -> int:
    """The last row that is not blank page, plus a margin."""
    import numpy as np

    pixels = np.asarray(image)
    drawn = np.flatnonzero((pixels < WHITE_BELOW).any(axis=(1, 2)))
    return int(min(pixels.shape[0], (drawn.max() + 24) if drawn.size else pixels.shape[0]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="an envaudit HTML report")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1100, help="CSS pixels (default 1100)")
    parser.add_argument("--height", type=int, default=6000,
                        help="window height in CSS pixels; the blank bottom is cut (default 6000)")
    parser.add_argument("--colors", type=int, default=192,
                        help="PNG palette size, at most 256 (default 192)")
    parser.add_argument("--hide", action="append", default=[], metavar="SELECTOR",
                        help="CSS selector to leave out of the picture (repeatable)")
    parser.add_argument("--section", metavar="ID",
                        help="keep only the report's section whose heading has this id")
    parser.add_argument("--only-top", metavar="ID",
                        help="keep the page only down to the element with this id")
    args = parser.parse_args(argv)
    page = prepared(args.report.read_text(encoding="utf-8"), args.hide, args.only_top,
                    args.section)
    with tempfile.TemporaryDirectory(prefix="envaudit-page-") as tmp:
        copy = Path(tmp) / "report.html"
        copy.write_text(page, encoding="utf-8")
        try:
            size = screenshot(copy, args.out, args.width, args.height, args.colors)
        except SystemExit as exc:
            print(exc, file=sys.stderr)
            return 2
    print(f"{args.out}: {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
