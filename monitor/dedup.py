"""Article identity and stories: canonical URL, content hash, MinHash near-duplicates, story assignment."""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from urllib.parse import urldefrag

import numpy as np
from courlan import normalize_url

from monitor.domain import http_link, unlinked_key

# datasketch is imported where it is used: its package imports SciPy, seconds that commands which never dedup skip.

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
SEED = 1
SCHEME = "affine32"  # datasketch's permutation scheme (its default since 2.0): 32-bit values
MIN_COPY_WORDS = 25  # fewer words than this never make a copy: two one-line items are not the same article
MAX_HASH = float(2**32 - 1)


def shingles(words: list[str], size: int = SHINGLE_WORDS) -> set[bytes]:
    return {" ".join(words[i : i + size]).encode("utf-8") for i in range(max(len(words) - size + 1, 0))}


def signature(text: str) -> np.ndarray | None:
    """The MinHash of a text's word shingles (NUM_PERM uint32 values), or None when the text is too short to compare."""
    words = normalised_words(text)
    if len(words) < MIN_COPY_WORDS:
        return None
    from datasketch import MinHash

    minhash = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
    minhash.update_batch(list(shingles(words)))
    return minhash.hashvalues.astype(np.uint32)


def signature_to_bytes(value: np.ndarray) -> bytes:
    """The stored form: datasketch's LeanMinHash serialisation."""
    from datasketch import LeanMinHash

    lean = LeanMinHash(seed=SEED, hashvalues=value, scheme=SCHEME)
    buffer = bytearray(lean.bytesize())
    lean.serialize(buffer)
    return bytes(buffer)


def signature_from_bytes(blob: bytes) -> np.ndarray:
    from datasketch import LeanMinHash

    return np.asarray(LeanMinHash.deserialize(blob).hashvalues, dtype=np.uint32)


def _hash_key(content_hash: str) -> int:
    """The content hash's first 64 bits: the copy index keeps these, not the 64-character string."""
    return int(content_hash[:16], 16)


@cache
def _bands(threshold: float) -> tuple[int, int]:
    """(bands, rows per band) of MinHash LSH at a Jaccard threshold, as datasketch's MinHashLSH chooses them (28 × 2 at 0.2)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    return lsh.b, lsh.r


@dataclass(frozen=True)
class Incoming:
    """An article about to be placed: its text fingerprints, meaning, time and tags."""

    key: object
    content_hash: str
    signature: np.ndarray | None
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


Tags = tuple[frozenset[str], frozenset[str], frozenset[str]]  # vendors, countries, actions


class _Columns:
    """Rows kept as NumPy columns (one array per field, grown by half again when full) beside Python lists of keys.

    A window of articles costs a few kilobytes each this way, where objects per article (MinHash objects, LSH
    buckets, datetimes, dicts) cost several times that (issue 16: 17 KB per article before).
    """

    def __init__(self, **columns: tuple[tuple[int, ...], type]) -> None:
        self._shapes = columns
        self.arrays = {name: np.zeros((0, *shape), dtype=dtype) for name, (shape, dtype) in columns.items()}
        self.objects: list[tuple] = []  # per row: its Python values (original and story; or story and tags)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def column(self, name: str) -> np.ndarray:
        return self.arrays[name][: self.size]

    def append(self, objects: tuple, **values) -> None:
        if self.size == len(next(iter(self.arrays.values()))):
            self._resize(max(64, self.size + self.size // 2))
        for name, value in values.items():
            self.arrays[name][self.size] = value
        self.objects.append(objects)
        self.size += 1

    def keep(self, rows: np.ndarray) -> None:
        """Keep only the rows where `rows` is true, in order, in arrays no larger than they need."""
        self.arrays = {name: np.ascontiguousarray(array[: self.size][rows]) for name, array in self.arrays.items()}
        self.objects = [objects for objects, kept in zip(self.objects, rows) if kept]
        self.size = len(self.objects)

    def _resize(self, capacity: int) -> None:
        for name, array in self.arrays.items():
            grown = np.zeros((capacity, *array.shape[1:]), dtype=array.dtype)
            grown[: self.size] = array[: self.size]
            self.arrays[name] = grown


class Deduper:
    """Places articles: same text, near-duplicate (MinHash LSH), same story (embedding + tags), or a new story.

    The indexes hold only recent articles (the windows of StoryRules); they are rebuilt from the store on start.
    Copies: each article's MinHash (uint32 values), a key per LSH band, estimated shingle count, first 64 bits of
    its content hash and time, the bands compared in NumPy. Stories: each article's vector in one float32 matrix,
    its time, and its tags (one shared tuple per distinct combination).
    Not thread-safe on its own: callers hold `lock` from place() to remember().
    """

    def __init__(self, rules: StoryRules | None = None):
        self.rules = rules or StoryRules()
        self.lock = threading.Lock()
        self._band_count, self._band_rows = _bands(self.rules.lsh_threshold)
        self._copies = _Columns(
            signature=((NUM_PERM,), np.uint32), bands=((self._band_count,), np.uint64), size=((), np.float32), hash=((), np.uint64), when=((), np.float64)
        )
        self._members: _Columns | None = None  # made with the first vector (its width)
        self._tags: dict[Tags, Tags] = {}
        self._pruned_at: datetime | None = None
        self.stored_through = 0  # the highest store id the indexes have seen: placement.catch_up reads on from it

    def __len__(self) -> int:
        return len(self._members) if self._members is not None else 0

    def place(self, item: Incoming) -> Placement:
        copy = self._copy_of(item)
        if copy is not None:
            return copy
        return self._story_for(item)

    def _copy_of(self, item: Incoming) -> Placement | None:
        if item.signature is None or not len(self._copies):
            return None
        copies = self._copies
        same = np.flatnonzero(copies.column("hash") == _hash_key(item.content_hash))
        if len(same):
            original, story = copies.objects[same[0]]
            return Placement(duplicate_of=original, copy_kind="text", story=story, similarity=1.0, reason="same text")
        query = np.asarray(item.signature, dtype=np.uint32)
        candidates = np.flatnonzero((copies.column("bands") == self._band_keys(query)).any(axis=1))
        seconds = np.abs(copies.column("when")[candidates] - item.when.timestamp())
        candidates = candidates[seconds <= self.rules.copy_window.total_seconds()]
        if not len(candidates):
            return None
        jaccard = (copies.column("signature")[candidates] == query).mean(axis=1)
        containment = _containment(jaccard, _count(query), copies.column("size")[candidates])
        best = int(np.argmax(containment))
        if containment[best] < self.rules.copy_containment:
            return None
        original, story = copies.objects[candidates[best]]
        return Placement(
            duplicate_of=original, copy_kind="near", story=story, similarity=float(containment[best]),
            reason=f"near-duplicate ({containment[best]:.0%} of shingles shared)",
        )

    def _story_for(self, item: Incoming) -> Placement:
        if not len(self):
            return Placement(None, None, None, reason="first article")
        members = self._members
        similarities = members.column("vector") @ np.asarray(item.vector, dtype=np.float32)
        nearest = np.argpartition(-similarities, 20)[:20] if len(similarities) > 20 else np.arange(len(similarities))
        at = item.when.timestamp()
        best: dict[object, tuple[float, float, Tags]] = {}
        for index in nearest[np.argsort(-similarities[nearest], kind="stable")]:
            similarity = float(similarities[index])
            if similarity < self.rules.same_story_with_tags:
                break
            apart = abs(float(members.column("when")[index]) - at)
            if apart > self.rules.follow_window.total_seconds():
                continue
            story, tags = members.objects[index]
            if story not in best:
                best[story] = (similarity, apart, tags)
        for story, (similarity, apart, tags) in sorted(best.items(), key=lambda kv: -kv[1][0]):
            reason = self._joins(item, tags, apart, similarity)
            if reason:
                return Placement(None, None, story, similarity, reason=f"same story ({reason}, similarity {similarity:.2f})")
        return Placement(None, None, None, reason="new story")

    def _joins(self, item: Incoming, tags: Tags, apart: float, similarity: float) -> str:
        """Why an article joins a member's story (tags, `apart` seconds from it), or "" when it does not.

        Tags that contradict (two jurisdictions acting, or two sets of vendors) keep two events apart however alike
        the words; a tag missing on one side (a first report that names no vendor) contradicts nothing."""
        vendors, countries, actions = tags
        mine, theirs = _acting(item.countries), _acting(countries)
        if mine and theirs and not mine & theirs:
            return ""
        if item.vendors and vendors and not item.vendors & vendors:
            return ""
        recent = apart <= self.rules.window.total_seconds()
        shared_event = bool(item.vendors & vendors or item.actions & actions)
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
        at = item.when.timestamp()
        if item.signature is not None:
            key = _hash_key(item.content_hash)
            if placement.copy_kind != "text" or not (self._copies.column("hash") == key).any():
                signature = np.asarray(item.signature, dtype=np.uint32)
                self._copies.append(
                    (original, story), signature=signature, bands=self._band_keys(signature), size=_count(signature), hash=key, when=at
                )
        if placement.copy_kind is None:
            if self._members is None:
                self._members = _Columns(vector=((len(item.vector),), np.float32), when=((), np.float64))
            tags = (item.vendors, item.countries, item.actions)
            self._members.append((story, self._tags.setdefault(tags, tags)), vector=item.vector, when=at)

    def _band_keys(self, signature: np.ndarray) -> np.ndarray:
        """One 64-bit key per LSH band: equal bands give equal keys (a rare equal key of unequal bands only adds a candidate)."""
        values = signature[: self._band_count * self._band_rows].reshape(self._band_count, self._band_rows).astype(np.uint64)
        keys = np.zeros(self._band_count, dtype=np.uint64)
        for column in values.T:
            keys = keys * np.uint64(0x100000001B3) ^ column  # FNV-style mixing; wraps around as intended
        return keys

    def clear(self) -> None:
        self.__init__(self.rules)

    def prune(self, now: datetime, *, every: timedelta = timedelta(hours=1)) -> None:
        """Forget what the windows no longer reach, at most once per `every`."""
        if self._pruned_at is None or now - self._pruned_at >= every:
            self.forget_before(now)
            self._pruned_at = now

    def forget_before(self, cutoff: datetime) -> None:
        """Drop articles older than the windows allow, so the indexes stay the size of recent news."""
        if self._members is not None:
            since = (cutoff - max(self.rules.window, self.rules.follow_window)).timestamp()
            self._members.keep(self._members.column("when") >= since)
            self._tags = {tags: tags for _story, tags in self._members.objects}
        self._copies.keep(self._copies.column("when") >= (cutoff - self.rules.copy_window).timestamp())


def _count(signatures: np.ndarray) -> np.ndarray:
    """The number of shingles a MinHash stands for (datasketch's MinHash.count), per row."""
    return NUM_PERM / np.sum(signatures / MAX_HASH, axis=-1) - 1.0


def _containment(jaccard: np.ndarray, size: float, sizes: np.ndarray) -> np.ndarray:
    """Share of the smaller shingle set inside the other, from the Jaccard estimates and both set sizes."""
    smaller = np.minimum(size, sizes)
    intersection = jaccard * (size + sizes) / (1 + jaccard)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((size > 0) & (sizes > 0), np.minimum(1.0, intersection / smaller), 0.0)
