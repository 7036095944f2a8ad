"""Tagger: the vendors, acting jurisdictions, actions and lexical evidence of an article, from a topic's vocabulary."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass

from monitor.domain import TopicSpec
from monitor.event import RESTRICTING, Cues, EventReader
from monitor.phrases import CATEGORIES, SUBJECT, Match, Vocabulary, lower_same_length
from monitor.segment import BODY, FURNITURE, LEAD, TITLE, Sentence, segment

ZONE_WEIGHT = {TITLE: 3.0, LEAD: 1.5, BODY: 1.0, FURNITURE: 0.0}

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

COORDINATION = re.compile(r"(?:\s*(?:,|and|&)\s*)+")

LEXICAL_FEATURES = (
    "vendor_in_title",
    "vendor_up_front",
    "vendor_mentions",
    "vendor_count",
    "subject_in_title",
    "subject_up_front",
    "subject_mentions",
    "action_in_title",
    "action_up_front",
    "action_mentions",
    "action_kinds",
    "cooccur",
    "cooccur_in_title",
    "cooccur_up_front",
    "actor_in_title",
    "actor_in_action_sentence",
    "actor_action_topic",
    "country_count",
    "furniture_share",
    "event_in_title",
    "event_up_front",
    "institution_acts",
    "action_in_background",
    "china_restricts",
    "adoption_up_front",
    "adoption_without_action",
)
# Features whose learned weight may not be negative (evidence of the event never counts against it, however short
# the story), and those whose weight may not be positive.
POSITIVE_FEATURES = frozenset(
    "vendor_in_title vendor_up_front vendor_mentions subject_in_title subject_up_front subject_mentions action_in_title "
    "action_up_front action_mentions cooccur cooccur_in_title cooccur_up_front actor_in_title actor_in_action_sentence "
    "actor_action_topic event_in_title event_up_front institution_acts".split()
)
NEGATIVE_FEATURES = frozenset({"action_in_background", "china_restricts", "adoption_up_front", "adoption_without_action"})


@dataclass(frozen=True)
class Tags:
    """What an article is about, as far as its words show.

    vendors: canonical vendor names, brands and subsidiaries folded in, that the story acts on, most salient first.
    mentioned_vendors: vendors the story names only in passing (background, comparison).
    countries: the jurisdictions acting (not every country named), most prominent first.
    actions: action keys of the vocabulary, most prominent first.
    evidence: per category (vendors, countries, actions, subjects), the phrases behind the tags, as written.
    features: numbers in [0, 1] for a classifier (see Article.features).
    event: the main event as read: actor, actor_kind, action, target, and role (subject: in the title or lead;
    body; background: the story names restrictions only in passing; none).
    """

    vendors: list[str]
    countries: list[str]
    actions: list[str]
    evidence: dict[str, list[str]]
    features: dict[str, float]
    mentioned_vendors: list[str]
    event: dict[str, str]


class Tagger:
    """Finds a topic's vendors, acting countries and actions in an article: compile once, then tag many.
    feature_names lists the keys of Tags.features in their order, the same for every article."""

    def __init__(self, spec: TopicSpec) -> None:
        self.vocabulary = Vocabulary(spec)
        self.reader = EventReader()
        self.action_keys = list(spec.actions)
        self.feature_names = list(LEXICAL_FEATURES) + [f"action_{key}" for key in self.action_keys]

    def tag(self, title: str, text: str) -> Tags:
        document, sentences = segment(" ".join((title or "").split()), text or "")
        matches = self.vocabulary.matches(document, lower_same_length(document))
        article = Article(document, sentences, matches, self.reader.cues(document))
        (vendors, mentioned), countries, actions = article.vendors(), article.countries(), article.actions()
        return Tags(
            vendors=vendors,
            countries=countries,
            actions=actions,
            evidence=article.evidence({"vendors": vendors, "countries": countries, "actions": actions}),
            features=article.features(vendors, countries, actions, self.action_keys),
            mentioned_vendors=mentioned,
            event=article.event(vendors, countries),
        )


class Article:
    """One article being tagged: its sentences, the matches in each, and the decisions drawn from them."""

    def __init__(self, document: str, sentences: list[Sentence], matches: dict[str, list[Match]], cues: Cues) -> None:
        self.document = document
        self.sentences = sentences
        self.cues = cues
        self.zones = [sentence.zone for sentence in sentences]
        starts = [sentence.start for sentence in sentences]
        self.all_matches = sum(len(found) for found in matches.values())
        self.background_actions = [m for m in matches["actions"] if cues.in_background(m.start)]
        matches = matches | {"actions": [m for m in matches["actions"] if not cues.in_background(m.start)]}
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

    def vendors(self) -> tuple[list[str], list[str]]:
        """The vendors acted on and those only mentioned, most salient first. Acted on: named in the title or lead,
        or repeatedly, or beside an action where the story has no other vendor or the sentence also names one of its
        vendors or the subject; failing all those, named anywhere in a story with an action. Mentions inside a
        background clause or a comparison ("like Huawei before it") count only as mentions."""
        salience: dict[str, float] = defaultdict(float)
        mentions: Counter[str] = Counter()
        prominent: set[str] = set()
        in_action_sentences: dict[str, list[int]] = defaultdict(list)
        named: list[str] = []
        for match, index in self.counted["vendors"]:
            named.append(match.key)
            if self.cues.in_background(match.start) or self.cues.compared(match.start):
                continue
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
        if not kept and self.action_sentences:
            kept = set(mentions)
        order = list(dict.fromkeys(named))
        acted = sorted(kept, key=lambda key: (-salience[key], order.index(key)))
        return acted, [key for key in order if key not in kept]

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

        *_in_title / *_up_front: named in the title / the title or first three body sentences (so that a brief
        that names its vendor once, in the title, loses nothing); *_mentions: log-scaled counts, soon saturated;
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
            "vendor_up_front": float(zones["vendors"][TITLE] + zones["vendors"][LEAD] > 0),
            "vendor_mentions": log_scaled(len(self.counted["vendors"]), 3),
            "vendor_count": min(len(vendors) / 5, 1.0),
            "subject_in_title": float(zones["subjects"][TITLE] > 0),
            "subject_up_front": float(zones["subjects"][TITLE] + zones["subjects"][LEAD] > 0),
            "subject_mentions": log_scaled(len(self.counted["subjects"]), 3),
            "action_in_title": float(zones["actions"][TITLE] > 0),
            "action_up_front": float(zones["actions"][TITLE] + zones["actions"][LEAD] > 0),
            "action_mentions": log_scaled(len(self.counted["actions"]), 4),
            "action_kinds": min(len(actions) / 4, 1.0),
            "cooccur": min(len(cooccur) / 5, 1.0),
            "cooccur_in_title": float(any(self.zones[i] == TITLE for i in cooccur)),
            "cooccur_up_front": float(any(self.zones[i] in (TITLE, LEAD) for i in cooccur)),
            "actor_in_title": float(zones["countries"][TITLE] > 0),
            "actor_in_action_sentence": min(len(actor_sentences) / 5, 1.0),
            "actor_action_topic": min(len(actor_sentences & self.topical_sentences) / 3, 1.0),
            "country_count": min(len(countries) / 3, 1.0),
            "furniture_share": (self.all_matches - counted) / self.all_matches if self.all_matches else 0.0,
        }
        features.update(self._event_features())
        features.update({f"action_{key}": float(key in actions) for key in action_keys})
        return features

    def _event_features(self) -> dict[str, float]:
        """event_in_title / event_up_front: an action with its target (a vendor or the subject) there; institution_acts:
        a government, regulator, parliament, court, council, institution or company named in such a sentence up
        front; action_in_background: actions up front only in background clauses ("despite sanctions");
        china_restricts: China acting up front with a restriction (the other direction); adoption_*: buying,
        installing, deploying, earnings up front, and up front with no action."""
        front = [i for i, zone in enumerate(self.zones) if zone in (TITLE, LEAD)]
        events = [i for i in front if i in self.action_sentences and i in self.topical_sentences]
        adoption = sum(self.cues.adoption_between(self.sentences[i].start, self.sentences[i].end) for i in front)
        background = [m for m in self.background_actions if self._sentence_of(m.start) in front]
        return {
            "event_in_title": float(any(self.zones[i] == TITLE for i in events)),
            "event_up_front": float(bool(events)),
            "institution_acts": float(any(self._actor_kinds(i) for i in events)),
            "action_in_background": float(bool(background) and not any(i in self.action_sentences for i in front)),
            "china_restricts": float(any(self._china_restricts(i) for i in front if i in self.action_sentences)),
            "adoption_up_front": min(adoption / 3, 1.0),
            "adoption_without_action": float(adoption > 0 and not events),
        }

    def _sentence_of(self, position: int) -> int:
        return max(bisect_right([sentence.start for sentence in self.sentences], position) - 1, 0)

    def _actor_kinds(self, index: int) -> list[str]:
        return self.cues.actor_kinds_between(self.sentences[index].start, self.sentences[index].end)

    def _china_restricts(self, index: int) -> bool:
        first = self.by_sentence["actions"][index][0]
        acts = "CN" in self._actors(index) or self.cues.china_acts_at(self.document, self.sentences[index].start, first.start)
        return acts and first.key in RESTRICTING

    def event(self, vendors: list[str], countries: list[str]) -> dict[str, str]:
        """The main event as read: the first sentence (title, lead, then body) with an action and its target."""
        candidates = sorted(self.action_sentences & self.topical_sentences) or sorted(self.action_sentences)
        if not candidates:
            role = "background" if self.background_actions else "none"
            return {"role": role, "action": self.background_actions[0].text if self.background_actions else ""}
        index = candidates[0]
        named = self.by_sentence["vendors"].get(index, []) + self.by_sentence["subjects"].get(index, [])
        targets = [m for m in named if not (self.cues.in_background(m.start) or self.cues.compared(m.start))]
        actors = self._actors(index)
        return {
            "actor": ", ".join(sorted(actors)) or (countries[0] if countries else ""),
            "actor_kind": ", ".join(self._actor_kinds(index)),
            "action": self.by_sentence["actions"][index][0].text,
            "target": targets[0].text if targets else ", ".join(vendors),
            "role": "subject" if self.zones[index] in (TITLE, LEAD) else "body",
        }


def kept_by_score(scores: dict[str, float], ratio: float, minimum: float) -> list[str]:
    """Keys scoring at least minimum and ratio times the best, best first."""
    if not scores:
        return []
    floor = max(minimum, ratio * max(scores.values()), 1e-9)
    return sorted((key for key, score in scores.items() if score >= floor), key=lambda key: -scores[key])


def log_scaled(count: int, cap: int) -> float:
    """A count on a log scale: 0 for none, 1 for cap or more."""
    return min(math.log1p(count) / math.log1p(cap), 1.0)
