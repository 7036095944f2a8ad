"""User text made safe for the word index: quoted FTS5 phrases, websearch_to_tsquery text, escaped snippets."""

from __future__ import annotations

import html
import re
from collections import defaultdict
from dataclasses import dataclass

MAX_TERMS = 32
SENTENCE_ENDS = (".", "!", "?", ".”", "?”", '."', "…")
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)
MARK_START, MARK_END = "\ue000", "\ue001"  # private-use sentinels around matched words, turned into <mark> after escaping

# PostgreSQL's english stop words, dropped on SQLite too so that both stores match the same articles
STOP_WORDS = frozenset(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself "
    "it its itself they them their theirs themselves what which who whom this that these those am is are was were be "
    "been being have has had having do does did doing a an the and but if or because as until while of at by for with "
    "about against between into through during before after above below to from up down in out on off over under again "
    "further then once here there when where why how all any both each few more most other some such no nor not only "
    "own same so than too very s t can will just don should now".split()
)
WORD = re.compile(r"[^\W_]+")
CHUNK = re.compile(r'(-?)"([^"]*)"|(-?)([^\s"]+)')


@dataclass(frozen=True)
class Terms:
    """User text as phrases to find and phrases to exclude, each a tuple of lower-case words."""

    include: tuple[tuple[str, ...], ...]
    exclude: tuple[tuple[str, ...], ...]

    def fts5(self) -> str:
        """An FTS5 query of quoted phrases only: no user character can act as FTS5 syntax."""
        quoted = lambda phrase: '"' + " ".join(phrase) + '"'  # noqa: E731 - words hold letters and digits only
        match = " AND ".join(quoted(p) for p in self.include)
        return "".join([f"({match})", *(f" NOT {quoted(p)}" for p in self.exclude)])

    def websearch(self) -> str:
        """The same query in websearch_to_tsquery's syntax."""
        return " ".join([*(f'"{" ".join(p)}"' for p in self.include), *(f'-"{" ".join(p)}"' for p in self.exclude)])

    def any_word(self) -> str:
        """websearch_to_tsquery's text for a text holding any of the words to find."""
        return " or ".join(f'"{word}"' for phrase in self.include for word in phrase)


def parse_terms(text: str) -> Terms:
    """"Quoted phrases" stay phrases, -word excludes; other words must all appear, stop words aside."""
    include: list[tuple[str, ...]] = []
    exclude: list[tuple[str, ...]] = []
    for match in CHUNK.finditer(text):
        quoted = match.group(2) is not None
        words = [w.lower() for w in WORD.findall(match.group(2) if quoted else match.group(4))]
        if not quoted:
            words = [w for w in words if w not in STOP_WORDS]
        if words:
            (exclude if (match.group(1) or match.group(3)) else include).append(tuple(words))
    return Terms(tuple(dict.fromkeys(include))[:MAX_TERMS], tuple(dict.fromkeys(exclude))[:MAX_TERMS])


def clean(text: str) -> str:
    """Text a database driver accepts: no NUL characters, no lone surrogates (undecodable command-line bytes)."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def unmarked(text: str) -> str:
    """Text without the highlight sentinels: stored text holding them would show stray marks in its snippets."""
    return text.replace(MARK_START, "").replace(MARK_END, "")


def render_snippet(raw: str) -> str:
    """Escape everything, then turn the sentinels the database put around matched words into <mark>."""
    joined = " ".join(raw.split()).replace(f"{MARK_END} {MARK_START}", " ")  # one mark over adjacent words
    escaped = html.escape(joined, quote=False)
    return escaped.replace(MARK_START, "<mark>").replace(MARK_END, "</mark>")


def cut_marked(raw: str, start: int) -> str:
    """raw from the start-th character of its text without sentinels; a mark the cut falls inside is reopened."""
    seen, inside = 0, False
    for at, character in enumerate(raw):
        if character in (MARK_START, MARK_END):
            inside = character == MARK_START
            continue
        if seen == start:
            return (MARK_START if inside else "") + raw[at:]
        seen += 1
    return ""


def marked_passage(raw: str, words: int) -> str:
    """About `words` words of a highlighted text from the start of the sentence of its first mark (or a few words before it,
    in a long sentence), with … where it is cut; empty without marks."""
    tokens = raw.split()
    first = next((i for i, token in enumerate(tokens) if MARK_START in token), None)
    if first is None:
        return ""
    begin = max(0, first - words // 5)
    for at in range(first - 1, max(-1, first - words // 2 - 1), -1):
        if at < 0 or tokens[at].endswith(SENTENCE_ENDS):
            begin = at + 1
            break
    begin = max(0, min(begin, len(tokens) - words))
    end = min(len(tokens), begin + words)
    opened = "".join(tokens[:begin]).rfind(MARK_START) > "".join(tokens[:begin]).rfind(MARK_END)
    passage = (MARK_START if opened else "") + " ".join(tokens[begin:end])
    if passage.rfind(MARK_START) > passage.rfind(MARK_END):
        passage += MARK_END
    return ("…" if begin else "") + passage + ("…" if end < len(tokens) else "")


def fuse(*rankings: list[int]) -> dict[int, float]:
    """Reciprocal rank fusion: each ranking gives 1 / (k + position) to each of its items."""
    fused: dict[int, float] = defaultdict(float)
    for ranking in rankings:
        for position, item in enumerate(ranking, 1):
            fused[item] += 1.0 / (RRF_K + position)
    return fused
