"""One colour and one word per status, for every format: the HTML page, its charts, the terminal
report's styles; the Markdown, which has no colour, writes the same words.

The colours are the Okabe-Ito palette (Okabe and Ito, "Color Universal Design", 2008): eight
colours that stay distinct under the common colour-vision deficiencies (protanopia,
deuteranopia, tritanopia). Six of them are the six array statuses; a verdict takes the colour of
the status it rests on (``equivalent`` is rounding noise, ``drift`` a change), so one meaning has
one colour on every page.

Constraints the next editor must keep:
- A colour never stands alone: wherever one is drawn, the status word (``Swatch.word``) is
  written next to it, so a reader without colour (a printout, NO_COLOR, a screen reader) loses
  nothing.
- No two statuses share a colour, and a status has the same colour in every format.
- ``ink`` is the text colour that reads on ``fill`` (contrast at least 4.5:1, WCAG AA).
- Nothing here decides a status: statuses and verdicts come with the data (``compare/``).
"""

from __future__ import annotations

from dataclasses import dataclass

from envaudit.compare.types import ArrayStatus, Verdict

# The Okabe-Ito colours, by their published names.
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
BLUISH_GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
REDDISH_PURPLE = "#CC79A7"
WHITE = "#FFFFFF"


@dataclass(frozen=True)
class Swatch:
    """How one status is shown: its word, its colour and the text colour that reads on it."""

    word: str
    fill: str
    ink: str = BLACK


# Least to most severe, as ``compare.types.STATUS_SEVERITY`` orders them.
STATUS: dict[ArrayStatus, Swatch] = {
    "identical": Swatch("identical", BLUISH_GREEN),
    "rounding": Swatch("rounding noise", SKY_BLUE),
    "tolerated": Swatch("within tolerance", BLUE, WHITE),
    "changed": Swatch("changed", ORANGE),
    # A finding of its own (nothing to compare), apart from "changed" and from "precision loss".
    "not_run": Swatch("not run", REDDISH_PURPLE),
    "precision_loss": Swatch("precision loss", VERMILLION),
}
# A verdict is shown as the status it rests on: an equivalent mode or check is rounding noise.
VERDICT_STATUS: dict[Verdict, ArrayStatus] = {
    "identical": "identical", "equivalent": "rounding", "drift": "changed",
    "precision_loss": "precision_loss"}
VERDICT: dict[Verdict, Swatch] = {
    verdict: Swatch(verdict.replace("_", " "), STATUS[status].fill, STATUS[status].ink)
    for verdict, status in VERDICT_STATUS.items()}
# A mode that could not run has no verdict: it is shown as an array that was not run.
MODE_NOT_RUN = Swatch("not run", STATUS["not_run"].fill, STATUS["not_run"].ink)
# Lines that are not statuses: references (rounding units, the noise band) and the golden side
# of a two-sided chart.
REFERENCE = "#555555"
NOISE_BAND = "#E8F4FB"  # a pale sky blue: the band where rounding noise lives
GOLDEN_SERIES = BLACK


def status_words() -> dict[str, str]:
    """Each array status in words (the one table every format reads)."""
    return {status: swatch.word for status, swatch in STATUS.items()}


def terminal_style(status: ArrayStatus) -> str:
    """The rich style of a status: its colour (rich falls back to the nearest of a terminal's
    colours where it has no true colour)."""
    return STATUS[status].fill


def verdict_terminal_style(verdict: str) -> str:
    """The rich style of a verdict (bold, in the colour of the status it rests on)."""
    swatch = VERDICT.get(verdict)  # type: ignore[call-overload]
    return f"bold {swatch.fill}" if swatch else "bold"
