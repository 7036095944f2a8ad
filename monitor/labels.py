"""Tags, times and evidence as a reader reads them: one wording for the Slack messages, the digest and the archive."""

from __future__ import annotations

import logging
from datetime import datetime, timezone, tzinfo
from functools import cache

from babel import Locale

log = logging.getLogger(__name__)

ACTION_WORDS = {
    "ban": "ban",
    "removal": "removal",
    "blacklist": "blacklisting",
    "sanction": "sanctions",
    "procurement_restriction": "procurement restriction",
    "call_for_ban": "call for a ban",
    "investigation": "investigation",
    "reversal": "reversal",
    "reaction": "reaction",
}
ACTION_HEADINGS = {
    "ban": "Bans",
    "removal": "Removals",
    "blacklist": "Blacklistings",
    "sanction": "Sanctions",
    "procurement_restriction": "Procurement restrictions",
    "call_for_ban": "Calls for bans",
    "investigation": "Investigations",
    "reversal": "Reversals",
    "reaction": "Reactions",
}
OTHER_HEADING = "Other stories"
SHORT_NAMES = {"EU": "EU"}  # "European Union" is long for a tag, and everyone reads "EU"
EXAMPLE_PREFIX = "example "
EVIDENCE_PHRASES = 3
EXAMPLE_CHARS = 90


@cache
def _territories() -> dict[str, str]:
    return dict(Locale("en").territories)


def flag(code: str) -> str:
    """The flag emoji of an ISO 3166 alpha-2 code (EU has one too); empty for anything else."""
    code = code.upper()
    if len(code) != 2 or not code.isascii() or not code.isalpha():
        return ""
    return "".join(chr(0x1F1E6 + ord(letter) - ord("A")) for letter in code)


def country_name(code: str) -> str:
    code = code.upper()
    return SHORT_NAMES.get(code) or _territories().get(code, code)


def country_label(code: str) -> str:
    """ "AU" -> "🇦🇺 Australia"."""
    return f"{flag(code)} {country_name(code)}".strip()


def action_label(code: str) -> str:
    """ "procurement_restriction" -> "procurement restriction"."""
    return ACTION_WORDS.get(code, code.replace("_", " "))


def action_heading(code: str | None) -> str:
    if code is None:
        return OTHER_HEADING
    return ACTION_HEADINGS.get(code, action_label(code).capitalize())


def tag_labels(vendors: list[str], countries: list[str], actions: list[str]) -> list[str]:
    """Every tag of a story as a readable label: vendors, then countries, then actions."""
    return [*vendors, *(country_label(code) for code in countries), *(action_label(code) for code in actions)]


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes in the store are UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def short_time(moment: datetime | None, zone: tzinfo = timezone.utc) -> str:
    """ "18 Nov 19:20" in the reader's zone; empty when unknown."""
    if moment is None:
        return ""
    local = as_utc(moment).astimezone(zone)
    return f"{local.day} {local:%b %H:%M}"


def shorten(text: str, limit: int) -> str:
    """At most limit characters, cut at a word with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut).rstrip(",;:") + "…"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


def evidence(why: dict) -> str:
    """The most human line of a verdict's evidence: the action words matched, the vendors or technology, and the closest example.

    `why` is what the topic scorer stored (monitor/classify.py): phrases as written in the article, and the
    labelled example the article is most like ("example 8: An investigation found…").
    """
    if not why:
        return ""
    actions = _quoted(why.get("action_phrases") or [])
    about = list(why.get("vendor_phrases") or [])[:EVIDENCE_PHRASES] or _quoted(why.get("subject_phrases") or [])
    parts = []
    if actions:
        parts.append("matched " + ", ".join(actions) + (" about " + ", ".join(about) if about else ""))
    elif about:
        parts.append("mentions " + ", ".join(about))
    example = str(why.get("closest_example") or "")
    if example.startswith(EXAMPLE_PREFIX) and ": " in example:
        example = example.split(": ", 1)[1]
    if example and example != "description":
        parts.append(f"closest to “{shorten(example, EXAMPLE_CHARS)}”")
    line = "; ".join(parts)
    return line[:1].upper() + line[1:]


def _quoted(phrases: list[str]) -> list[str]:
    seen = list(dict.fromkeys(phrase.strip() for phrase in phrases if phrase.strip()))
    return [f"“{phrase}”" for phrase in seen[:EVIDENCE_PHRASES]]
