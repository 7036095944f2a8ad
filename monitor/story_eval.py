"""`monitor eval --stories`: pairwise precision and recall of "same story" and "copy", beside URL-only and exact-hash dedup."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from monitor.classify import Document, jsonl_records
from monitor.dedup import Deduper, Incoming, StoryRules, canonical_url, content_hash, signature
from monitor.domain import Embedder
from monitor.evaluate import binary_scores
from monitor.tags import Tagger


@dataclass(frozen=True)
class StoryItem:
    id: str
    group: str
    copy_of: str | None
    document: Document
    url: str
    published: datetime


def read_story_items(path: Path) -> list[StoryItem]:
    items = []
    for number, raw in jsonl_records(path):
        try:
            items.append(
                StoryItem(
                    id=str(raw["id"]),
                    group=str(raw["group"]),
                    copy_of=raw.get("copy_of"),
                    document=Document(raw.get("title") or "", raw.get("text") or ""),
                    url=raw.get("url") or f"urn:item:{raw['id']}",
                    published=datetime.fromisoformat(str(raw["published"]).replace("Z", "+00:00")),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: not a story item ({exc})") from exc
    return items


def place_all(items: list[StoryItem], vectors, tagger: Tagger, rules: StoryRules) -> tuple[dict[str, str], dict[str, str]]:
    """Run the deduper over items in time order: each item's story and its copy root (itself when original)."""
    deduper = Deduper(rules)
    story_of, root_of = {}, {}
    order = sorted(range(len(items)), key=lambda i: items[i].published)
    for index in order:
        item = items[index]
        tags = tagger.tag(item.document.title, item.document.text)
        incoming = Incoming(
            key=item.id,
            content_hash=content_hash(item.document.text),
            signature=signature(item.document.text),
            vector=vectors[index],
            when=item.published,
            vendors=frozenset(tags.vendors),
            countries=frozenset(tags.countries),
            actions=frozenset(tags.actions),
        )
        placement = deduper.place(incoming)
        story = placement.story if placement.story is not None else item.id
        deduper.remember(incoming, placement, story=story)
        story_of[item.id] = story
        root_of[item.id] = placement.duplicate_of if placement.duplicate_of is not None else item.id
    return story_of, root_of


def pair_scores(items: list[StoryItem], predicted: dict[str, str], gold: dict[str, str]) -> dict:
    pairs = list(itertools.combinations([i.id for i in items], 2))
    scores = binary_scores([predicted[a] == predicted[b] for a, b in pairs], [gold[a] == gold[b] for a, b in pairs])
    return {k: round(v, 3) for k, v in asdict(scores).items()}


def evaluate_stories(items: list[StoryItem], embedder: Embedder, tagger: Tagger, rules: StoryRules | None = None) -> dict:
    vectors = embedder.embed([i.document.for_embedding for i in items])
    story_of, root_of = place_all(items, vectors, tagger, rules or StoryRules())
    gold_story = {i.id: i.group for i in items}
    gold_copy = {i.id: i.copy_of or i.id for i in items}
    by_url = {i.id: canonical_url(i.url) for i in items}
    by_hash = {i.id: content_hash(i.document.text) for i in items}
    merged_events = sorted(
        {tuple(sorted({gold_story[a], gold_story[b]})) for a, b in itertools.combinations(story_of, 2)
         if story_of[a] == story_of[b] and gold_story[a] != gold_story[b]}
    )
    return {
        "items": len(items),
        "stories": len(set(gold_story.values())),
        "predicted_stories": len(set(story_of.values())),
        "same_story": {
            "monitor": pair_scores(items, story_of, gold_story),
            "url_only": pair_scores(items, by_url, gold_story),
            "exact_hash": pair_scores(items, by_hash, gold_story),
        },
        "copy": {
            "monitor": pair_scores(items, root_of, gold_copy),
            "url_only": pair_scores(items, by_url, gold_copy),
            "exact_hash": pair_scores(items, by_hash, gold_copy),
        },
        "merged_different_stories": [list(pair) for pair in merged_events],
    }


def render_stories(report: dict) -> str:
    lines = [f"stories: {report['items']} articles in {report['stories']} stories; the monitor made {report['predicted_stories']}"]
    for relation in ("same_story", "copy"):
        lines.append(f"{relation.replace('_', ' ')} (pairwise){'precision':>14}{'recall':>10}{'F1':>10}")
        for method, s in report[relation].items():
            lines.append(f"  {method.replace('_', ' '):24}{s['precision']:>10.3f}{s['recall']:>10.3f}{s['f1']:>10.3f}")
    merged = report["merged_different_stories"]
    lines.append(f"different stories merged: {len(merged)}" + (f" ({', '.join('+'.join(p) for p in merged)})" if merged else ""))
    return "\n".join(lines)
