"""``render/palette.py``: one colour and one word per status, the same in every format.

The colours are the Okabe-Ito palette; no two statuses share one; the text on each reads
(WCAG contrast at least 4.5:1); a verdict wears the colour of the status it rests on; and the
terminal's styles, the Markdown's titles and words and the HTML's verdict colours are read from
this one table.
"""

from __future__ import annotations

from typing import get_args

from envaudit.compare.types import STATUS_SEVERITY, VERDICTS, ArrayStatus
from envaudit.render import check_html, check_md, check_text, formatting, palette

OKABE_ITO = {"#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
             "#CC79A7"}


def _luminance(colour: str) -> float:
    """WCAG 2 relative luminance of a "#RRGGBB" colour."""
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_status_has_its_own_okabe_ito_colour_and_word() -> None:
    assert tuple(palette.STATUS) == STATUS_SEVERITY  # least to most severe
    assert set(palette.STATUS) == set(get_args(ArrayStatus))
    fills = [s.fill for s in palette.STATUS.values()]
    words = [s.word for s in palette.STATUS.values()]
    assert len(set(fills)) == len(fills) == 6 and len(set(words)) == 6
    assert set(fills) <= OKABE_ITO


def test_the_word_on_each_colour_reads() -> None:
    swatches = [*palette.STATUS.values(), *palette.VERDICT.values(), palette.MODE_NOT_RUN]
    for swatch in swatches:
        assert _contrast(swatch.fill, swatch.ink) >= 4.5, swatch
    assert _contrast("#000000", "#FFFFFF") == 21.0  # the formula, checked at its known end
    assert _contrast(palette.BLUE, palette.BLACK) < 4.5  # why "within tolerance" is in white


def test_a_verdict_wears_the_colour_of_the_status_it_rests_on() -> None:
    assert tuple(palette.VERDICT) == VERDICTS
    for verdict, status in palette.VERDICT_STATUS.items():
        assert palette.VERDICT[verdict].fill == palette.STATUS[status].fill
    assert palette.VERDICT["precision_loss"].word == palette.STATUS["precision_loss"].word
    assert palette.VERDICT["equivalent"].fill == palette.STATUS["rounding"].fill


def test_every_format_reads_the_one_table() -> None:
    """Text styles and words, Markdown words and titles, HTML verdict colours: from ``palette``
    (Markdown has no colour, so it carries the same words)."""
    for status, swatch in palette.STATUS.items():
        assert formatting.STATUS_WORDS[status] == swatch.word
        assert check_text.STATUS_STYLE[status] == (swatch.word, swatch.fill)
        assert swatch.word in str(check_md.STATUS_WORDS[status])
    for verdict, swatch in palette.VERDICT.items():
        assert check_md.TITLES[verdict].endswith(f" {swatch.word}")
        assert check_text.VERDICT_STYLE[verdict][1] == f"bold {swatch.fill}"
        assert check_html.VERDICT_COLOR[verdict] == swatch.fill
