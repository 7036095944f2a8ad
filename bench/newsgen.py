"""Generated news: realistic articles made by recombining the sentences of the demo site."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import timedelta

from monitor.demo.site import SiteArticle, load_demo_articles

SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'])")


def sentence_pool() -> list[str]:
    sentences = []
    for article in load_demo_articles():
        for paragraph in article.paragraphs:
            sentences.extend(s.strip() for s in SENTENCE.split(paragraph) if len(s.split()) >= 6)
    return sentences


def generate_articles(count: int, *, words: int = 600, seed: int = 7) -> list[SiteArticle]:
    """count distinct articles of about `words` words, in paragraphs of 3-5 sentences."""
    rng = random.Random(seed)
    pool = sentence_pool()
    template = load_demo_articles()[0]
    articles = []
    for number in range(count):
        sentences, total = [], 0
        while total < words:
            sentence = rng.choice(pool)
            sentences.append(sentence)
            total += len(sentence.split())
        paragraphs, start = [], 0
        while start < len(sentences):
            size = rng.randint(3, 5)
            paragraphs.append(" ".join(sentences[start : start + size]))
            start += size
        title_words = rng.choice(pool).rstrip(".").split()[: rng.randint(7, 12)]
        articles.append(
            replace(
                template,
                slug=f"story-{number:05d}",
                feeds=[],
                title=" ".join(title_words),
                summary=sentences[0],
                paragraphs=paragraphs,
                published=template.published - timedelta(minutes=number),
                on_topic=False,
            )
        )
    return articles
