"""Tags, times, evidence and text openings as a reader reads them: one wording for Slack, the digest and the archive."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime, timezone, tzinfo
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
# the digest's sections, weightiest first: what was done before what was asked for or said about it
ACTION_ORDER = (
    "ban", "removal", "blacklist", "sanction", "procurement_restriction", "investigation", "reversal", "call_for_ban", "reaction",
)  # fmt: skip
OTHER_HEADING = "Other stories"
SHORT_NAMES = {"EU": "EU"}  # "European Union" is long for a tag, and everyone reads "EU"
SUMMARY_CHARS = 280
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
HEADLINE_SLACK = 40  # characters of section name or kicker a page may put before the repeated headline
KICKER = re.compile(r"\s*[^\n.!?]{1,30}\n")  # a short first line without a full stop: "World", "Business", "Analysis"
KICKER_WORDS = 3
OPENING_SEPARATORS = " \t\r\n.:|—–-"
# the topic model's features (monitor/classify.py, monitor/tags.py) as a reader would say them
FEATURE_WORDS = {
    "sim_description": "how close in meaning it is to the topic's description",
    "sim_examples": "how close in meaning it is to the labelled examples",
    "sim_negatives": "how close in meaning it is to examples of what the topic is not",
    "sim_margin": "how much closer it is to the examples than to the counter-examples",
    "vendor_in_title": "whether the headline names a vendor",
    "vendor_in_lead": "whether the opening sentences name a vendor",
    "vendor_mentions": "how often it names vendors",
    "vendor_count": "how many vendors it names",
    "subject_in_title": "whether the headline names the technology (cameras, drones…)",
    "subject_in_lead": "whether the opening sentences name the technology (cameras, drones…)",
    "subject_mentions": "how often it names the technology",
    "action_in_title": "whether the headline names an action (a ban, a removal…)",
    "action_in_lead": "whether the opening sentences name an action (a ban, a removal…)",
    "action_mentions": "how often it names a ban, removal or other action",
    "action_kinds": "how many kinds of action it names",
    "cooccur": "how often a vendor or the technology and an action share a sentence",
    "cooccur_in_title": "whether the headline names a vendor or the technology and an action together",
    "cooccur_in_lead": "whether the opening sentences name a vendor or the technology and an action together",
    "actor_in_title": "whether the headline names a country acting",
    "actor_in_action_sentence": "how often it says who acts: a country beside the action",
    "actor_action_topic": "how often one sentence holds who acts, the action and a vendor or the technology",
    "country_count": "how many countries act in it",
    "furniture_share": "how many of its matches are in site furniture (menus, related links)",
}
SIGNAL = re.compile(r"^(?P<name>[A-Za-z0-9_]+) (?P<sign>[+-])(?P<size>\d+(?:\.\d+)?)$")
STRONG_SIGNAL = 2.0
MATCHED_BY = {"words": "matched by words", "meaning": "matched by meaning", "both": "matched by words and meaning"}
EVIDENCE_KEYS = {"similarity": "Similarity to the example", "strongest_signals": "Strongest signals"}  # the keys of a verdict's `why`
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


def action_weight(code: str | None) -> int:
    """A section's place in ACTION_ORDER; actions it does not know, then stories without an action, come last."""
    if code is None:
        return len(ACTION_ORDER) + 1
    return ACTION_ORDER.index(code) if code in ACTION_ORDER else len(ACTION_ORDER)


def topic_title(name: str, title: str | None = None) -> str:
    """A topic as readers see it: its title from feeds.yaml, else its name in words ("china-surveillance-bans" -> "China surveillance bans")."""
    if title and title.strip():
        return " ".join(title.split())
    words = re.sub(r"[-_]+", " ", name).strip()
    return words[:1].upper() + words[1:]


def action_heading(code: str | None) -> str:
    if code is None:
        return OTHER_HEADING
    return ACTION_HEADINGS.get(code, action_label(code).capitalize())


def matched_by(matched: str | None, similarity: float | None) -> str:
    """How a search found a story, for the archive and the terminal: "matched by meaning · 0.62 similar"; a story
    near another one (no query) only "0.78 similar"."""
    label = MATCHED_BY.get(matched, f"matched by {matched}") if matched else ""
    close = f"{similarity:.2f} similar" if similarity is not None else ""
    return " · ".join(part for part in (label, close) if part)


def evidence_key(key: str) -> str:
    """A key of a verdict's evidence as the story page heads it: "vendor_phrases" -> "Vendor phrases"."""
    return EVIDENCE_KEYS.get(key) or key.replace("_", " ").capitalize()


def feature_words(name: str) -> str:
    """A model feature in words; "action_ban" -> "whether it is tagged ban"; one it does not know, its name in words."""
    if name in FEATURE_WORDS:
        return FEATURE_WORDS[name]
    if name.startswith("action_") and name.removeprefix("action_") in ACTION_WORDS:
        return f"whether it is tagged “{action_label(name.removeprefix('action_'))}”"
    return name.replace("_", " ").strip()


def signal_words(signal: str) -> str:
    """One of the strongest signals a verdict stored ("action_mentions +2.5") in words:
    "How often it names a ban, removal or other action: weighs strongly for"; what it cannot read comes back as it is."""
    found = SIGNAL.match(signal.strip())
    if not found:
        return signal
    strength = "strongly " if float(found["size"]) >= STRONG_SIGNAL else ""
    words = feature_words(found["name"])
    return f"{words[:1].upper()}{words[1:]}: weighs {strength}{'for' if found['sign'] == '+' else 'against'} the topic"


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


def story_start(text: str, title: str = "") -> int:
    """Where the story proper begins in an article's text: after the headline that pages repeat at their start
    (with the section name before it), else after a first line that is only a section name; 0 when it starts at once.

    The one rule for every output that shows the start of a text: snippets, exports, feeds, the digest and Slack.
    """
    words = title.split()
    if words:
        headline = re.compile(r"(?<!\w)" + r"\s+".join(re.escape(word) for word in words) + r"(?!\w)", re.IGNORECASE)
        found = headline.search(text, 0, 2 * len(title) + HEADLINE_SLACK)
        if found and found.start() <= HEADLINE_SLACK:
            return _past_separators(text, found.end())
    kicker = KICKER.match(text)
    if kicker and len(kicker.group().split()) <= KICKER_WORDS and text[kicker.end() :].strip():
        return _past_separators(text, kicker.end())
    return 0


def _past_separators(text: str, at: int) -> int:
    while at < len(text) and text[at] in OPENING_SEPARATORS:
        at += 1
    return at


def lead(text: str, limit: int = SUMMARY_CHARS, *, title: str = "") -> str:
    """The first sentences of a text that fit in limit characters (one cut sentence when none fits), from where the story starts."""
    text = " ".join(text[story_start(text, title) :].split())
    if len(text) <= limit:
        return text
    taken = ""
    for sentence in SENTENCE_END.split(text):
        if len(taken) + len(sentence) + 1 > limit:
            break
        taken = f"{taken} {sentence}".strip()
    return taken or text[: limit - 1].rsplit(" ", 1)[0] + "…"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else (words or word + 's')}"


def spike_subject(dimension: str, value: str, topic_label: str) -> str:
    """What a spike is about, as a reader names it: the vendor, the country's name, or the topic's title."""
    return country_name(value) if dimension == "country" else topic_label if dimension == "topic" else value


def spike_sentence(subject: str, stories: int, baseline: float, day: date, today: date) -> str:
    """ "Hikvision: 9 stories today against 1.2 a day"; a day before today is named ("on Tue 24 Nov")."""
    when = "today" if day == today else f"on {day:%a} {day.day} {day:%b}"
    return f"{subject}: {plural(stories, 'story', 'stories')} {when} against {baseline:.1f} a day"


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
