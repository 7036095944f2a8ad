"""Article identity and stories: canonical URL, content hash, MinHash near-duplicates, story assignment."""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urldefrag

import numpy as np
from courlan import normalize_url

if TYPE_CHECKING:
    from datasketch import LeanMinHash

# datasketch is imported where it is used: its package imports SciPy, seconds that commands which never dedup skip.

from monitor.domain import http_link, unlinked_key

WORD = re.compile(r"\w+", re.UNICODE)


def canonical_url(url: str) -> str:
    """The article's key: tracking parameters and fragment dropped, scheme and host lower-cased.

    courlan's strict mode would also drop parameters that name the article (news.php?story=1),
    so only its tracking list applies. An address that is no http(s) link (javascript:, data:, …)
    is never kept: its key is a name that links nowhere.
    """
    if http_link(url) is None:
        return unlinked_key(url)
    url = urldefrag(url.strip()).url
    try:
        return normalize_url(url)
    except (ValueError, AttributeError):
        return url


def normalised_words(text: str) -> list[str]:
    return WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def content_hash(text: str) -> str:
    """Same words in the same order give the same hash, whatever the spacing, case or punctuation."""
    return hashlib.sha256(" ".join(normalised_words(text)).encode("utf-8")).hexdigest()


SHINGLE_WORDS = 4
NUM_PERM = 128
MIN_COPY_WORDS = 25  # fewer words than this never make a copy: two one-line items are not the same article


def shingles(words: list[str], size: int = SHINGLE_WORDS) -> set[bytes]:
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(max(len(words) - size + 1, 0))}


def signature(text: str) -> LeanMinHash | None:
    """The MinHash of a text's word shingles, or None when the text is too short to compare."""
    words = normalised_words(text)
    if len(words) < MIN_COPY_WORDS:
        return None
    from datasketch import LeanMinHash, MinHash

    minhash = MinHash(num_perm=NUM_PERM, seed=1)
    minhash.update_batch(list(shingles(words)))
    return LeanMinHash(minhash)


def signature_to_bytes(value: LeanMinHash) -> bytes:
    buffer = bytearray(value.bytesize())
    value.serialize(buffer)
    return bytes(buffer)


def signature_from_bytes(blob: bytes) -> LeanMinHash:
    from datasketch import LeanMinHash

    return LeanMinHash.deserialize(bytearray(blob))


@dataclass(frozen=True)
class Incoming:
    """An article about to be placed: its text fingerprints, meaning, time and tags."""

    key: object
    content_hash: str
    signature: LeanMinHash | None
    vector: np.ndarray
    when: datetime
    vendors: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    actions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Placement:
    """Where an article goes: a copy of an earlier one (same text or near-duplicate), a story, or a new story."""

    duplicate_of: object | None
    copy_kind: str | None  # "text" or "near"
    story: object | None  # None: a new story
    similarity: float = 0.0
    reason: str = ""


@dataclass
class _Member:
    key: object
    story: object
    vector: np.ndarray
    when: datetime
    countries: frozenset[str]
    vendors: frozenset[str]
    actions: frozenset[str]


@dataclass(frozen=True)
class StoryRules:
    """Thresholds chosen by measurement on eval/stories.jsonl (see `monitor eval --stories`)."""

    copy_containment: float = 0.6  # share of the shorter text's shingles found in the other
    lsh_threshold: float = 0.2  # Jaccard at which LSH proposes candidates (containment is checked after)
    same_story: float = 0.80  # cosine similarity that joins a story on meaning alone
    same_story_with_tags: float = 0.65  # ...and when the acting country and the vendors or actions agree
    follow_up: float = 0.72  # ...and when the tags share a vendor, action or country and none contradict
    window: timedelta = timedelta(days=3)  # a story older than this is a new story, on meaning alone
    follow_window: timedelta = timedelta(days=7)  # ...unless its tags agree: later reports of one event
    copy_window: timedelta = timedelta(days=7)  # copies are looked for among this many days of articles


def _acting(countries: frozenset[str]) -> frozenset[str]:
    """Acting jurisdictions other than China, whose reactions appear in one write-up and not another."""
    return countries - {"CN"}


class Deduper:
    """Places articles: same text, near-duplicate (MinHash LSH), same story (embedding + tags), or a new story.

    The indexes hold only recent articles (the windows of StoryRules); they are rebuilt from the store on start.
    Not thread-safe on its own: callers hold `lock` from place() to remember().
    """

    def __init__(self, rules: StoryRules | None = None):
        from datasketch import MinHashLSH

        self.rules = rules or StoryRules()
        self.lock = threading.Lock()
        self._lsh = MinHashLSH(threshold=self.rules.lsh_threshold, num_perm=NUM_PERM)
        self._signatures: dict[object, tuple[LeanMinHash, datetime, object, object]] = {}
        self._hashes: dict[str, tuple[object, object]] = {}
        self._members: list[_Member] = []
        self._matrix = np.zeros((0, 0), dtype=np.float32)  # rows 0..len(_members) hold the members' vectors
        self._pruned_at: datetime | None = None
        self.stored_through = 0  # the highest store id the indexes have seen: placement.catch_up reads on from it

    def __len__(self) -> int:
        return len(self._members)

    def place(self, item: Incoming) -> Placement:
        copy = self._copy_of(item)
        if copy is not None:
            return copy
        return self._story_for(item)

    def _copy_of(self, item: Incoming) -> Placement | None:
        if item.signature is None:
            return None
        same = self._hashes.get(item.content_hash)
        if same is not None:
            return Placement(duplicate_of=same[0], copy_kind="text", story=same[1], similarity=1.0, reason="same text")
        best, best_containment = None, 0.0
        for key in self._lsh.query(item.signature):
            signature, when, original, story = self._signatures[key]
            if abs(when - item.when) > self.rules.copy_window:
                continue
            containment = _containment(item.signature, signature)
            if containment > best_containment:
                best, best_containment = (original, story), containment
        if best is not None and best_containment >= self.rules.copy_containment:
            return Placement(
                duplicate_of=best[0], copy_kind="near", story=best[1], similarity=best_containment,
                reason=f"near-duplicate ({best_containment:.0%} of shingles shared)",
            )
        return None

    def _story_for(self, item: Incoming) -> Placement:
        if not self._members:
            return Placement(None, None, None, reason="first article")
        similarities = self._matrix[: len(self._members)] @ item.vector
        best: dict[object, tuple[float, _Member]] = {}
        for index in np.argsort(-similarities)[:20]:
            member, similarity = self._members[index], float(similarities[index])
            if similarity < self.rules.same_story_with_tags:
                break
            if abs(member.when - item.when) > self.rules.follow_window:
                continue
            if member.story not in best:
                best[member.story] = (similarity, member)
        for story, (similarity, member) in sorted(best.items(), key=lambda kv: -kv[1][0]):
            reason = self._joins(item, member, similarity)
            if reason:
                return Placement(None, None, story, similarity, reason=f"same story ({reason}, similarity {similarity:.2f})")
        return Placement(None, None, None, reason="new story")

    def _joins(self, item: Incoming, member: _Member, similarity: float) -> str:
        """Why an article joins a member's story, or "" when it does not. Tags that contradict (two jurisdictions
        acting, or two sets of vendors) keep two events apart however alike the words; a tag missing on one side
        (a first report that names no vendor) contradicts nothing."""
        mine, theirs = _acting(item.countries), _acting(member.countries)
        if mine and theirs and not mine & theirs:
            return ""
        if item.vendors and member.vendors and not item.vendors & member.vendors:
            return ""
        recent = abs(member.when - item.when) <= self.rules.window
        shared_event = bool(item.vendors & member.vendors or item.actions & member.actions)
        same_place = bool(mine & theirs) or not (mine or theirs)
        if recent and same_place and shared_event:
            return "same country and vendors or action"
        if recent and similarity >= self.rules.same_story:
            return "same meaning"
        if similarity >= self.rules.follow_up and shared_event:
            return "follow-up: tags agree"
        return ""

    def remember(self, item: Incoming, placement: Placement, *, story: object) -> None:
        """Add a placed article to the indexes, with the story it ended in."""
        original = placement.duplicate_of if placement.duplicate_of is not None else item.key
        if item.signature is not None:
            self._hashes.setdefault(item.content_hash, (original, story))
            if placement.copy_kind != "text":
                self._signatures[item.key] = (item.signature, item.when, original, story)
                self._lsh.insert(item.key, item.signature, check_duplication=False)
        if placement.copy_kind is None:
            self._add_member(_Member(item.key, story, item.vector, item.when, item.countries, item.vendors, item.actions))

    def _add_member(self, member: _Member) -> None:
        count = len(self._members)
        if count == len(self._matrix):
            grown = np.zeros((max(64, 2 * count), len(member.vector)), dtype=np.float32)
            if count:
                grown[:count] = self._matrix[:count]
            self._matrix = grown
        self._matrix[count] = member.vector
        self._members.append(member)

    def clear(self) -> None:
        self.__init__(self.rules)

    def prune(self, now: datetime, *, every: timedelta = timedelta(hours=1)) -> None:
        """Forget what the windows no longer reach, at most once per `every`."""
        if self._pruned_at is None or now - self._pruned_at >= every:
            self.forget_before(now)
            self._pruned_at = now

    def forget_before(self, cutoff: datetime) -> None:
        """Drop articles older than the windows allow, so the indexes stay the size of recent news."""
        kept = [m for m in self._members if m.when >= cutoff - max(self.rules.window, self.rules.follow_window)]
        self._members, self._matrix = [], np.zeros((0, 0), dtype=np.float32)
        for member in kept:
            self._add_member(member)
        for key, (_, when, _, _) in list(self._signatures.items()):
            if when < cutoff - self.rules.copy_window:
                del self._signatures[key]
                self._lsh.remove(key)


def _containment(a: LeanMinHash, b: LeanMinHash) -> float:
    """Share of the smaller shingle set inside the other, from the Jaccard estimate and both set sizes."""
    jaccard = a.jaccard(b)
    size_a, size_b = a.count(), b.count()
    if not size_a or not size_b:
        return 0.0
    intersection = jaccard * (size_a + size_b) / (1 + jaccard)
    return min(1.0, intersection / min(size_a, size_b))
