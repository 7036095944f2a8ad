"""Article identity: canonical URLs and content fingerprints."""

from __future__ import annotations

import hashlib
import re
import unicodedata

from urllib.parse import urldefrag

from courlan import normalize_url

WORD = re.compile(r"\w+", re.UNICODE)


def canonical_url(url: str) -> str:
    """The article's key: tracking parameters and fragment dropped, scheme and host lower-cased.

    courlan's strict mode would also drop parameters that name the article (news.php?story=1),
    so only its tracking list applies.
    """
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
