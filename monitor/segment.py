"""Segmenting an article: the title, the lead and body sentences, and the lines of site furniture (menus, bylines,
captions, related links) that say nothing about the story."""

from __future__ import annotations

import re
from typing import NamedTuple

TITLE, LEAD, BODY, FURNITURE = "title", "lead", "body", "furniture"
LEAD_SENTENCES = 3
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


class Sentence(NamedTuple):
    start: int
    end: int
    zone: str


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
