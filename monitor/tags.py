"""Tagger: the vendors, acting jurisdictions, actions and lexical evidence of an article, from a topic's vocabulary."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from monitor.config import TopicSpec

CATEGORIES = ("vendors", "countries", "actions", "subjects")
SUBJECT = "subject"

TITLE, LEAD, BODY, FURNITURE = "title", "lead", "body", "furniture"
ZONE_WEIGHT = {TITLE: 3.0, LEAD: 1.5, BODY: 1.0, FURNITURE: 0.0}
LEAD_SENTENCES = 3

VENDOR_WEIGHT = {TITLE: 3.0, LEAD: 1.5, BODY: 1.0}
VENDOR_ACTION_BONUS = 1.0
VENDOR_REPEATS = 2

COUNTRY_TITLE_MENTION = 0.5
COUNTRY_TITLE_FIRST = 2.0
COUNTRY_LEAD_MENTION = 0.3
COUNTRY_KEEP_RATIO = 0.7

ACTION_MIN_SCORE = 1.0
ACTION_KEEP_RATIO = 0.6
ACTION_LATER_WEIGHT = 0.3

SEPARATOR = r"[\s\-\u2010\u2011\u2013\u2014]+"
GAP_WORDS = 4
GAP = rf"(?:[^\w.!?;\n]+[\w'’\-]+){{0,{GAP_WORDS}}}?[^\w.!?;\n]+"
APOSTROPHE = "['’]"
WORD_START = r"[^\w]"
HYPHENS = "-\u2010\u2011\u2013\u2014"
GAP_TOKEN, SPACE_TOKEN, STAR_TOKEN = "...", " ", "*"
RESOLVED_CACHE_LIMIT = 20_000
UNRESOLVED = object()

ABBREVIATIONS = (
    "mr mrs ms dr st jr sr gov sen rep gen col lt sgt capt inc corp co ltd no vs etc "
    "jan feb mar apr jun jul aug sep sept oct nov dec mo fla calif wash"
).split()
SENTENCE_BREAK = re.compile(
    r"[.!?]"
    + "".join(rf"(?<!\b(?i:{abbreviation})\.)" for abbreviation in ABBREVIATIONS)
    + r"(?<!\b[A-Z]\.)(?<!\.[A-Za-z]\.)[\"'”’)\]]*\s+(?![a-z])"
)
FURNITURE_LABEL = re.compile(
    r"^\W*(?:read more|see also|related|also read|read also|more on this story|you may also like|recommended"
    r"|most read|tags|topics|image caption|photo|picture|credit|advertisement|sponsored)\b",
    re.IGNORECASE,
)
SENTENCE_FINAL = tuple(".!?:\"”’'")
BODY_MIN_WORDS = 4
BODY_ANY_WORDS = 20
COORDINATION = re.compile(r"(?:\s*(?:,|and|&)\s*)+")

LEXICAL_FEATURES = (
    "vendor_in_title",
    "vendor_in_lead",
    "vendor_mentions",
    "vendor_count",
    "subject_in_title",
    "subject_in_lead",
    "subject_mentions",
    "action_in_title",
    "action_in_lead",
    "action_mentions",
    "action_kinds",
    "cooccur",
    "cooccur_in_title",
    "cooccur_in_lead",
    "actor_in_title",
    "actor_in_action_sentence",
    "actor_action_topic",
    "country_count",
    "furniture_share",
)


@dataclass(frozen=True)
class Tags:
    """What an article is about, as far as its words show.

    vendors: canonical vendor names, brands and subsidiaries folded in, most salient first.
    countries: the jurisdictions acting (not every country named), most prominent first.
    actions: action keys of the vocabulary, most prominent first.
    evidence: per category (vendors, countries, actions, subjects), the phrases behind the tags, as written.
    features: numbers in [0, 1] for a classifier (see Article.features).
    """

    vendors: list[str]
    countries: list[str]
    actions: list[str]
    evidence: dict[str, list[str]]
    features: dict[str, float]


class Match(NamedTuple):
    key: str
    start: int
    end: int
    text: str


class Sentence(NamedTuple):
    start: int
    end: int
    zone: str


class Group(NamedTuple):
    alternatives: tuple[tuple[object, ...], ...]


@dataclass(frozen=True)
class Phrase:
    """One vocabulary entry with its leading alternatives spelled out: a regex on lower-cased text (literal prefix,
    then tail), whether it needs a capital first letter, and for an acronym the regex its capitals must match."""

    category: str
    key: str | None
    prefix: str
    tail: str
    specificity: int
    needs_capital: bool
    exact_case: str

    @property
    def regex(self) -> str:
        """The regex of the phrase on lower-cased text."""
        return re.escape(self.prefix) + self.tail


# The phrase language of the vocabulary (documented in feeds.yaml): characters, spaces and hyphens,
# {alternatives|...}, * (more letters) and ... (a short gap).


def parse_phrase(entry: str) -> tuple[object, ...]:
    """Tokens of a vocabulary entry: characters, SPACE_TOKEN, GAP_TOKEN, STAR_TOKEN and Groups."""
    tokens, _ = _parse_sequence(entry, 0, nested=False)
    return _squeeze_spaces(tokens)


def _parse_sequence(entry: str, position: int, nested: bool) -> tuple[list[object], int]:
    tokens: list[object] = []
    while position < len(entry):
        char = entry[position]
        if char in "|}":
            if not nested:
                raise ValueError(f"vocabulary entry {entry!r}: '{char}' outside braces")
            return tokens, position
        if char == "{":
            group, position = _parse_group(entry, position + 1)
            tokens.append(group)
        elif entry.startswith(GAP_TOKEN, position):
            tokens.append(GAP_TOKEN)
            position += len(GAP_TOKEN)
        else:
            tokens.append(SPACE_TOKEN if char.isspace() or char in HYPHENS else char)
            position += 1
    if nested:
        raise ValueError(f"vocabulary entry {entry!r}: '{{' never closed")
    return tokens, position


def _parse_group(entry: str, position: int) -> tuple[Group, int]:
    alternatives = []
    while True:
        tokens, position = _parse_sequence(entry, position, nested=True)
        alternatives.append(_squeeze_spaces(tokens))
        position += 1
        if entry[position - 1] == "}":
            return Group(tuple(alternatives)), position


def _squeeze_spaces(tokens: Iterable[object]) -> tuple[object, ...]:
    """Merge runs of spaces, and let a gap swallow the spaces around it."""
    squeezed: list[object] = []
    for token in tokens:
        if token == SPACE_TOKEN and squeezed and squeezed[-1] in (SPACE_TOKEN, GAP_TOKEN):
            continue
        if token == GAP_TOKEN and squeezed and squeezed[-1] == SPACE_TOKEN:
            squeezed.pop()
        squeezed.append(token)
    return tuple(squeezed)


def spell_out_start(tokens: tuple[object, ...]) -> list[tuple[object, ...]]:
    """The token sequences of an entry with the alternatives at its start spelled out: each begins with a character."""
    if not tokens:
        return []
    head, tail = tokens[0], tokens[1:]
    if isinstance(head, Group):
        spelled = (spell_out_start(_squeeze_spaces(alternative + tail)) for alternative in head.alternatives)
        return [sequence for sequences in spelled for sequence in sequences]
    if head in (SPACE_TOKEN, GAP_TOKEN):
        return spell_out_start(tail)
    if head == STAR_TOKEN:
        raise ValueError("a vocabulary entry cannot start with '*'")
    return [tokens]


def tokens_to_regex(tokens: Iterable[object], lower: bool) -> str:
    parts = []
    for token in tokens:
        if isinstance(token, Group):
            parts.append("(?:" + "|".join(tokens_to_regex(alt, lower) for alt in token.alternatives) + ")")
        elif token == SPACE_TOKEN:
            parts.append(SEPARATOR)
        elif token == GAP_TOKEN:
            parts.append(GAP)
        elif token == STAR_TOKEN:
            parts.append(r"\w*")
        elif token in "'’":
            parts.append(APOSTROPHE)
        else:
            parts.append(re.escape(token.lower() if lower else token))
    return "".join(parts)


def literal_length(tokens: Iterable[object]) -> int:
    """How much fixed text a token sequence spells: entries spelling more are tried first."""
    total = 0
    for token in tokens:
        if isinstance(token, Group):
            total += min(literal_length(alt) for alt in token.alternatives)
        elif token not in (GAP_TOKEN, STAR_TOKEN):
            total += 1
    return total


def letters_of(tokens: Iterable[object]) -> str:
    letters = []
    for token in tokens:
        if isinstance(token, Group):
            letters.extend(letters_of(alt) for alt in token.alternatives)
        elif isinstance(token, str) and token.isalpha():
            letters.append(token)
    return "".join(letters)


def compile_entry(category: str, key: str, entry: str) -> list[Phrase]:
    """The Phrases of one vocabulary entry; an entry starting with '!' is an exception (key None)."""
    is_exception = entry.startswith("!")
    source = (entry[1:] if is_exception else entry).strip()
    phrases = []
    for tokens in spell_out_start(parse_phrase(source)):
        letters = letters_of(tokens)
        in_capitals = bool(letters) and letters.isupper()
        literal = literal_prefix(tokens)
        if not literal[:1].isalnum():
            raise ValueError(f"vocabulary entry {entry!r}: must start with a letter or a digit")
        phrases.append(
            Phrase(
                category=category,
                key=None if is_exception else key,
                prefix=literal.lower(),
                tail=tokens_to_regex(tokens[len(literal) :], lower=True) + r"(?!\w)",
                specificity=literal_length(tokens),
                needs_capital=literal[0].isupper() and not in_capitals,
                exact_case=tokens_to_regex(tokens, lower=False) + r"(?!\w)" if in_capitals else "",
            )
        )
    return phrases


def literal_prefix(tokens: tuple[object, ...]) -> str:
    """The plain characters an entry starts with."""
    prefix = []
    for token in tokens:
        if not isinstance(token, str) or token in (SPACE_TOKEN, GAP_TOKEN, STAR_TOKEN) or token in "'’":
            break
        prefix.append(token)
    return "".join(prefix)


def trie_regex(phrases: list[Phrase]) -> str:
    """One regex matching wherever any of the phrases does, their literal prefixes shared as a trie so that the
    regex engine rejects most positions after a character or two."""
    root: dict[str, dict] = {}
    for phrase in sorted(phrases, key=lambda p: -p.specificity):
        node = root
        for char in phrase.prefix:
            node = node.setdefault(char, {})
        node.setdefault("", []).append(phrase.tail)
    return _render(root)


def _render(node: dict) -> str:
    branches = [re.escape(char) + _render(child) for char, child in node.items() if char]
    branches += [f"(?:{tail})" for tail in node.get("", [])]
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


class PhraseIndex:
    """Every phrase, matched on lower-cased text: one regex finds each word where a phrase starts and, there, how
    far the phrases of each category reach; names and acronyms are then checked for capitals in the original."""

    def __init__(self, phrases: list[Phrase]) -> None:
        grouped: dict[str, list[Phrase]] = defaultdict(list)
        for phrase in phrases:
            grouped[phrase.category].append(phrase)
        self.categories = list(grouped)
        reach = "".join(f"(?=({trie_regex(grouped[category])})?)" for category in self.categories)
        self.scan = re.compile(f"{WORD_START}(?={trie_regex(phrases)}){reach}") if phrases else None
        self.candidates: dict[tuple[str, str], list[Phrase]] = defaultdict(list)
        for phrase in sorted(phrases, key=lambda p: -p.specificity):
            self.candidates[(phrase.prefix[0], phrase.category)].append(phrase)
        self.compiled: dict[str, re.Pattern[str]] = {}
        self.resolved: dict[tuple[str, str], Phrase | object | None] = {}

    def find(self, lowered: str, original: str) -> Iterator[tuple[int, int, Phrase]]:
        """Every (start, end, phrase) found; phrases of different categories may overlap."""
        if self.scan is None:
            return
        for found in self.scan.finditer(lowered):
            for (start, end), category in zip(found.regs[1:], self.categories):
                if end > start:
                    phrase = self._resolve(category, lowered, start, end)
                    if phrase is not None and self._cased(phrase, original, start, end):
                        yield start, end, phrase

    def _cased(self, phrase: Phrase, original: str, start: int, end: int) -> bool:
        if phrase.exact_case:
            return self._reaches(phrase.exact_case, original, start, end)
        return original[start].isupper() or not phrase.needs_capital

    def _resolve(self, category: str, searched: str, start: int, end: int) -> Phrase | None:
        """The phrase of a category spanning a match; cached, since the same text is the same phrase."""
        cache_key = (category, searched[start:end])
        cached = self.resolved.get(cache_key, UNRESOLVED)
        if cached is not UNRESOLVED:
            return cached
        candidates = self.candidates[(searched[start], category)]
        phrase = next((p for p in candidates if self._reaches(p.regex, searched, start, end)), None)
        if len(self.resolved) > RESOLVED_CACHE_LIMIT:
            self.resolved.clear()
        self.resolved[cache_key] = phrase
        return phrase

    def _reaches(self, regex: str, text: str, start: int, end: int) -> bool:
        """Whether regex, matched at start, ends at end."""
        compiled = self.compiled.get(regex)
        if compiled is None:
            compiled = self.compiled[regex] = re.compile(regex)
        match = compiled.match(text, start)
        return match is not None and match.end() == end


class Vocabulary:
    """A topic's vocabulary compiled for matching."""

    def __init__(self, spec: TopicSpec) -> None:
        entries = {"vendors": spec.vendors, "countries": spec.countries, "actions": spec.actions}
        entries["subjects"] = {SUBJECT: spec.subjects}
        phrases = [
            phrase
            for category, vocabulary in entries.items()
            for key, items in vocabulary.items()
            for entry in items
            for phrase in compile_entry(category, key, entry)
        ]
        self.index = PhraseIndex(phrases)

    def matches(self, original: str, lowered: str) -> dict[str, list[Match]]:
        """Per category, the matches from left to right; where two overlap, the leftmost, then the longest, wins."""
        found: dict[str, list[tuple[int, int, Phrase]]] = {category: [] for category in CATEGORIES}
        for start, end, phrase in self.index.find(lowered, original):
            found[phrase.category].append((start, end, phrase))
        return {category: non_overlapping(items, original) for category, items in found.items()}


def non_overlapping(found: list[tuple[int, int, Phrase]], original: str) -> list[Match]:
    found.sort(key=lambda item: (item[0], item[0] - item[1]))
    kept: list[Match] = []
    last_end = -1
    for start, end, phrase in found:
        if start < last_end:
            continue
        last_end = end
        if phrase.key is not None:
            kept.append(Match(phrase.key, start, end, original[start:end]))
    return kept


def lower_same_length(text: str) -> str:
    """text.lower(), keeping every character in its place (a few characters lower-case to two)."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


# Segmenting an article: the title, lead and body sentences, and lines of site furniture.


def is_furniture(line: str) -> bool:
    """Menus, bylines, captions, 'Read more' and related-link lines: short lines that are no sentence, or labelled."""
    words = line.count(" ") + 1
    if words < BODY_ANY_WORDS and (words < BODY_MIN_WORDS or not line.endswith(SENTENCE_FINAL)):
        return True
    return FURNITURE_LABEL.match(line) is not None


def sentence_spans(line: str) -> list[tuple[int, int]]:
    """Where the sentences of a line start and end: at . ! or ? and a space, not after an abbreviation or initial,
    nor before a lower-case word."""
    spans = []
    begin = 0
    for end_mark in SENTENCE_BREAK.finditer(line):
        spans.append((begin, end_mark.start() + 1))
        begin = end_mark.end()
    if begin < len(line):
        spans.append((begin, len(line)))
    return spans


def segment(title: str, text: str) -> tuple[str, list[Sentence]]:
    """The document (a line break, the title, a blank line, the text) and its sentences, each in a zone.
    A text of one line (a summary, or an article flattened) has no lines of furniture."""
    document = f"\n{title}\n\n{text}"
    sentences = [Sentence(1, len(title) + 1, TITLE)] if title else []
    lead_left = LEAD_SENTENCES
    offset = len(title) + 3
    lines = text.split("\n")
    for raw_line in lines:
        line = raw_line.strip()
        start = offset + raw_line.find(line[:1]) if line else offset
        offset += len(raw_line) + 1
        if not line:
            continue
        if len(lines) > 1 and is_furniture(line):
            sentences.append(Sentence(start, start + len(line), FURNITURE))
            continue
        for begin, end in sentence_spans(line):
            sentences.append(Sentence(start + begin, start + end, LEAD if lead_left > 0 else BODY))
            lead_left -= 1
    return document, sentences


class Tagger:
    """Finds a topic's vendors, acting countries and actions in an article: compile once, then tag many.
    feature_names lists the keys of Tags.features in their order, the same for every article."""

    def __init__(self, spec: TopicSpec) -> None:
        self.vocabulary = Vocabulary(spec)
        self.action_keys = list(spec.actions)
        self.feature_names = list(LEXICAL_FEATURES) + [f"action_{key}" for key in self.action_keys]

    def tag(self, title: str, text: str) -> Tags:
        document, sentences = segment(" ".join((title or "").split()), text or "")
        matches = self.vocabulary.matches(document, lower_same_length(document))
        article = Article(document, sentences, matches)
        vendors, countries, actions = article.vendors(), article.countries(), article.actions()
        return Tags(
            vendors=vendors,
            countries=countries,
            actions=actions,
            evidence=article.evidence({"vendors": vendors, "countries": countries, "actions": actions}),
            features=article.features(vendors, countries, actions, self.action_keys),
        )


class Article:
    """One article being tagged: its sentences, the matches in each, and the decisions drawn from them."""

    def __init__(self, document: str, sentences: list[Sentence], matches: dict[str, list[Match]]) -> None:
        self.document = document
        self.zones = [sentence.zone for sentence in sentences]
        starts = [sentence.start for sentence in sentences]
        self.all_matches = sum(len(found) for found in matches.values())
        self.counted: dict[str, list[tuple[Match, int]]] = {}
        self.by_sentence: dict[str, dict[int, list[Match]]] = {}
        for category in CATEGORIES:
            placed = [(match, max(bisect_right(starts, match.start) - 1, 0)) for match in matches[category]]
            self.counted[category] = [(m, i) for m, i in placed if sentences and self.zones[i] != FURNITURE]
            grouped: dict[int, list[Match]] = defaultdict(list)
            for match, index in self.counted[category]:
                grouped[index].append(match)
            self.by_sentence[category] = grouped
        self.action_sentences = set(self.by_sentence["actions"])
        self.topical_sentences = set(self.by_sentence["vendors"]) | set(self.by_sentence["subjects"])

    def vendors(self) -> list[str]:
        """Vendors named in the title or lead, or repeatedly, or beside an action where the story has no other
        vendor or the sentence also names one of its vendors or the subject; most salient first."""
        salience: dict[str, float] = defaultdict(float)
        mentions: Counter[str] = Counter()
        prominent: set[str] = set()
        in_action_sentences: dict[str, list[int]] = defaultdict(list)
        for match, index in self.counted["vendors"]:
            zone = self.zones[index]
            mentions[match.key] += 1
            salience[match.key] += VENDOR_WEIGHT[zone]
            if zone != BODY:
                prominent.add(match.key)
            if index in self.action_sentences:
                salience[match.key] += VENDOR_ACTION_BONUS
                in_action_sentences[match.key].append(index)
        core = {key for key in mentions if key in prominent or mentions[key] >= VENDOR_REPEATS}
        kept = core | {
            key
            for key in mentions.keys() - core
            if any(not core or self._ties_to_story(index, core) for index in in_action_sentences[key])
        }
        order = list(mentions)
        return sorted(kept, key=lambda key: (-salience[key], order.index(key)))

    def _ties_to_story(self, index: int, core: set[str]) -> bool:
        named = {match.key for match in self.by_sentence["vendors"][index]}
        return bool(named & core) or index in self.by_sentence["subjects"]

    def countries(self) -> list[str]:
        """Countries acting: the actors of sentences with an action, weighted by zone, and those named first in
        the title; kept when close to the strongest."""
        scores: dict[str, float] = defaultdict(float)
        title_seen = False
        for match, index in self.counted["countries"]:
            zone = self.zones[index]
            if zone == TITLE:
                scores[match.key] += COUNTRY_TITLE_MENTION + (0.0 if title_seen else COUNTRY_TITLE_FIRST)
                title_seen = True
            elif zone == LEAD:
                scores[match.key] += COUNTRY_LEAD_MENTION
        acting: set[str] = set()
        for index in self.action_sentences:
            for actor in self._actors(index):
                scores[actor] += ZONE_WEIGHT[self.zones[index]]
                acting.add(actor)
        if self.zones and self.zones[0] == TITLE:
            acting.update(match.key for match in self.by_sentence["countries"].get(0, []))
        return kept_by_score({key: scores[key] for key in acting}, COUNTRY_KEEP_RATIO, minimum=0.0)

    def _actors(self, index: int) -> set[str]:
        """The countries acting in a sentence: the first named before its first action, with any joined to it by
        'and' or commas; else the first named after it."""
        countries = self.by_sentence["countries"].get(index)
        if not countries:
            return set()
        first_action = self.by_sentence["actions"][index][0]
        before = [country for country in countries if country.end <= first_action.start]
        if not before:
            return {countries[0].key}
        actors = {before[0].key}
        for previous, current in zip(before, before[1:]):
            if not COORDINATION.fullmatch(self.document, previous.end, current.start):
                break
            actors.add(current.key)
        return actors

    def actions(self) -> list[str]:
        """Actions in the title, the lead or sentences naming a vendor or the subject, weighted by zone, an action
        after a sentence's first (its object: 'urged a ban', 'challenged the listing') counting less; kept when
        strong enough and close to the strongest."""
        scores: dict[str, float] = defaultdict(float)
        for index, found in self.by_sentence["actions"].items():
            zone = self.zones[index]
            if zone == BODY and index not in self.topical_sentences:
                continue
            main = found[0].key
            for match in found:
                scores[match.key] += ZONE_WEIGHT[zone] * (1.0 if match.key == main else ACTION_LATER_WEIGHT)
        return kept_by_score(scores, ACTION_KEEP_RATIO, minimum=ACTION_MIN_SCORE)

    def evidence(self, tags: dict[str, list[str]]) -> dict[str, list[str]]:
        """Per category, the distinct phrases behind the tags as written (all subject phrases)."""
        evidence: dict[str, list[str]] = {}
        for category in CATEGORIES:
            chosen = set(tags.get(category, [SUBJECT]))
            phrases: dict[str, str] = {}
            for match, _ in self.counted[category]:
                if match.key in chosen:
                    written = " ".join(match.text.split())
                    phrases.setdefault(written.lower(), written)
            evidence[category] = list(phrases.values())
        return evidence

    def features(
        self, vendors: list[str], countries: list[str], actions: list[str], action_keys: list[str]
    ) -> dict[str, float]:
        """Lexical evidence for a classifier, each in [0, 1]; site furniture counts only in furniture_share.

        *_in_title / *_in_lead: named in the title / first three body sentences; *_mentions: log-scaled counts;
        cooccur: sentences naming a vendor or the subject and an action (capped at 5); actor_in_action_sentence:
        sentences with an action and a country (capped at 5); actor_action_topic: those also naming a vendor or
        the subject (capped at 3); action_<key>: the tag holds that action.
        """
        zones = {category: Counter(self.zones[i] for _, i in self.counted[category]) for category in CATEGORIES}
        cooccur = self.action_sentences & self.topical_sentences
        actor_sentences = self.action_sentences & set(self.by_sentence["countries"])
        counted = sum(len(found) for found in self.counted.values())
        features = {
            "vendor_in_title": float(zones["vendors"][TITLE] > 0),
            "vendor_in_lead": float(zones["vendors"][LEAD] > 0),
            "vendor_mentions": log_scaled(len(self.counted["vendors"]), 10),
            "vendor_count": min(len(vendors) / 5, 1.0),
            "subject_in_title": float(zones["subjects"][TITLE] > 0),
            "subject_in_lead": float(zones["subjects"][LEAD] > 0),
            "subject_mentions": log_scaled(len(self.counted["subjects"]), 10),
            "action_in_title": float(zones["actions"][TITLE] > 0),
            "action_in_lead": float(zones["actions"][LEAD] > 0),
            "action_mentions": log_scaled(len(self.counted["actions"]), 20),
            "action_kinds": min(len(actions) / 4, 1.0),
            "cooccur": min(len(cooccur) / 5, 1.0),
            "cooccur_in_title": float(any(self.zones[i] == TITLE for i in cooccur)),
            "cooccur_in_lead": float(any(self.zones[i] == LEAD for i in cooccur)),
            "actor_in_title": float(zones["countries"][TITLE] > 0),
            "actor_in_action_sentence": min(len(actor_sentences) / 5, 1.0),
            "actor_action_topic": min(len(actor_sentences & self.topical_sentences) / 3, 1.0),
            "country_count": min(len(countries) / 3, 1.0),
            "furniture_share": (self.all_matches - counted) / self.all_matches if self.all_matches else 0.0,
        }
        features.update({f"action_{key}": float(key in actions) for key in action_keys})
        return features


def kept_by_score(scores: dict[str, float], ratio: float, minimum: float) -> list[str]:
    """Keys scoring at least minimum and ratio times the best, best first."""
    if not scores:
        return []
    floor = max(minimum, ratio * max(scores.values()), 1e-9)
    return sorted((key for key, score in scores.items() if score >= floor), key=lambda key: -scores[key])


def log_scaled(count: int, cap: int) -> float:
    """A count on a log scale: 0 for none, 1 for cap or more."""
    return min(math.log1p(count) / math.log1p(cap), 1.0)
