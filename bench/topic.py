"""Cost of scoring and tagging per article, beyond the embedding, on generated 600-word articles."""

from __future__ import annotations

import time
from pathlib import Path

from monitor.classify import Document, TopicScorer, read_labelled
from monitor.config import load_config
from monitor.embed import SentenceTransformerEmbedder

from bench.newsgen import generate_articles

ROOT = Path(__file__).resolve().parents[1]
ARTICLES = 1000


def main(cache_dir: Path | None = None) -> dict:
    topic = load_config(ROOT / "feeds.yaml").topics[0]
    embedder = SentenceTransformerEmbedder()
    training = [item for path in topic.training for item in read_labelled(path)]
    scorer = TopicScorer(topic, embedder, training=training, cache_dir=cache_dir or ROOT / "data" / "models")
    assert scorer.model is not None
    documents = [Document(a.title, "\n\n".join([a.summary, *a.paragraphs])) for a in generate_articles(ARTICLES, seed=11)]
    vectors = embedder.embed([d.for_embedding for d in documents])
    scorer.score(documents[:10], vectors[:10])
    start = time.perf_counter()
    for i in range(0, ARTICLES, 32):
        scorer.score(documents[i : i + 32], vectors[i : i + 32])
    per_article = (time.perf_counter() - start) / ARTICLES
    start = time.perf_counter()
    for document in documents:
        scorer.tagger.tag(document.title, document.text)
    tagging = (time.perf_counter() - start) / ARTICLES
    return {"score_and_tag_ms": per_article * 1000, "tag_ms": tagging * 1000, "words": 600}


def report(result: dict) -> None:
    print(
        f"topic: scoring and tagging {result['score_and_tag_ms']:.2f} ms per {result['words']}-word article "
        f"beyond its embedding (tagging alone {result['tag_ms']:.2f} ms; goal <= 2 ms)"
    )


if __name__ == "__main__":
    report(main())
