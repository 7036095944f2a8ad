"""The embedding's speed and what it costs in quality: torch, ONNX Runtime and ONNX int8, reading 256 or 128 tokens.

Articles per second on generated 600-word articles; the detector's precision and recall as `monitor eval` measures them
(cross-validated on the labelled set) and the stories' pairwise precision and recall as `monitor eval --stories` does.
`python -m bench.embedding ARTICLES` times fewer articles.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from monitor.classify import Document, TopicScorer, read_labelled
from monitor.config import load_config
from monitor.embed import BACKENDS, SentenceTransformerEmbedder
from monitor.story_eval import evaluate_stories, read_story_items
from monitor.tags import Tagger
from monitor.topic_eval import evaluate

from bench.newsgen import generate_articles

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = 400
TOKENS = (256, 128)
TOLERANCE = 0.01  # how far P, R and story pairs may fall below torch at 256 tokens for a faster choice to be the default


def measure(embedder: SentenceTransformerEmbedder, texts: list[str], topic, items, stories) -> dict:
    embedder.embed(texts[:8])  # the model loaded (and exported, the first time) before the clock starts
    start = time.perf_counter()
    embedder.embed(texts)
    per_second = len(texts) / (time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as models:
        detector = evaluate(TopicScorer(topic, embedder, training=items, cache_dir=Path(models)), items, cross_validate=True)
    story = evaluate_stories(stories, embedder, Tagger(topic))["same_story"]["monitor"]
    return {
        "per_s": per_second,
        "precision": detector["detector"]["precision"],
        "recall": detector["detector"]["recall"],
        "story_precision": story["precision"],
        "story_recall": story["recall"],
    }


def holds(row: dict, reference: dict) -> bool:
    keys = ("precision", "recall", "story_precision", "story_recall")
    return all(row[k] >= reference[k] - TOLERANCE for k in keys)


def main(cache_dir: Path | None = None, articles: int = ARTICLES) -> dict:
    topic = load_config(ROOT / "feeds.yaml").topics[0]
    items = [item for path in topic.training for item in read_labelled(path)]
    stories = read_story_items(ROOT / "eval" / "stories.jsonl")
    texts = [Document(a.title, "\n\n".join([a.summary, *a.paragraphs])).for_embedding for a in generate_articles(articles, seed=5)]
    cache = cache_dir or ROOT / "data" / "models" / "onnx"
    rows = {}
    for tokens in TOKENS:
        for backend in BACKENDS:
            embedder = SentenceTransformerEmbedder(backend=backend, max_tokens=tokens, cache_dir=cache)
            rows[(backend, tokens)] = measure(embedder, texts, topic, items, stories)
            print(row_line(backend, tokens, rows[(backend, tokens)]), flush=True)  # a slow run shows each as it comes
    reference = rows[("torch", 256)]
    for row in rows.values():
        row["holds"] = holds(row, reference)
    fastest = max((key for key, row in rows.items() if row["holds"]), key=lambda key: rows[key]["per_s"])
    return {"rows": rows, "fastest_holding": fastest, "articles": articles}


def row_line(backend: str, tokens: int, row: dict) -> str:
    return (
        f"  {backend:10}{tokens:>7}{row['per_s']:>8.1f}{row['precision']:>8.3f}{row['recall']:>8.3f}"
        f"{row['story_precision']:>9.3f}{row['story_recall']:>9.3f}"
    )


def report(result: dict) -> None:
    print(f"embedding: {result['articles']} generated articles; detector cross-validated; story pairs on eval/stories.jsonl")
    print(f"  {'backend':10}{'tokens':>7}{'art/s':>8}{'P':>8}{'R':>8}{'story P':>9}{'story R':>9}  quality holds (within {TOLERANCE} of torch 256)")
    for (backend, tokens), row in result["rows"].items():
        print(f"{row_line(backend, tokens, row)}  {'yes' if row['holds'] else 'no'}")
    backend, tokens = result["fastest_holding"]
    print(f"  fastest where quality holds: {backend} at {tokens} tokens")


if __name__ == "__main__":
    import sys

    report(main(articles=int(sys.argv[1]) if len(sys.argv) > 1 else ARTICLES))
