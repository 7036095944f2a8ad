"""The phrase language of a topic's vocabulary (documented in feeds.yaml), compiled into one index that finds every
phrase of every category in a text."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from monitor.domain import TopicSpec

CATEGORIES = ("vendors", "countries", "actions", "subjects")
SUBJECT = "subject"

SEPARATOR = r"[\s\-\u2010\u2011\u2013\u2014]+"
GAP_WORDS = 4
GAP = rf"(?:[^\w.!?;\n]+[\w'’\-]+){{0,{GAP_WORDS}}}?[^\w.!?;\n]+"
APOSTROPHE = "['’]"
WORD_START = r"[^\w]"
HYPHENS = "-\u2010\u2011\u2013\u2014"
GAP_TOKEN, SPACE_TOKEN, STAR_TOKEN = "...", " ", "*"
RESOLVED_CACHE_LIMIT = 20_000
UNRESOLVED = object()


class Match(NamedTuple):
    key: str
    start: int
    end: int
    text: str


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
