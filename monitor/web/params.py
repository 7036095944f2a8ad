"""The query string of a search, validated once for the pages, the API, the exports and the feed."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from monitor.domain import Config
from monitor.store.search import FIRST_DAY, LAST_DAY, SearchQuery

MAX_PER_PAGE = 100
MAX_PAGE = 500
SCALARS = {"mode", "sort", "topic", "since", "until", "page", "per_page", "relevant", "facets"}


def _blank_to_none(value: Any) -> Any:
    """An empty form field means 'not given', as a browser sends every field of a GET form."""
    return None if isinstance(value, str) and not value.strip() else value


class SearchParams(BaseModel):
    """Every parameter of /, /api/search, its exports and /feed.atom; lists repeat (vendor=A&vendor=B)."""

    model_config = ConfigDict(extra="ignore")

    q: str = Field("", description="Words or a sentence; empty: the newest stories.")
    mode: Literal["hybrid", "words", "meaning"] = Field("hybrid", description="words (full text), meaning (embeddings) or hybrid (both, fused).")
    topic: str | None = Field(None, description="Topic name (default: the first of feeds.yaml).")
    relevant: bool = Field(True, description="Only stories relevant to the topic.")
    vendor: list[str] = Field(default_factory=list, description="Vendor tag, e.g. Hikvision; repeat for any of several.")
    country: list[str] = Field(default_factory=list, description="Acting jurisdiction, ISO 3166 alpha-2 or EU; repeatable.")
    action: list[str] = Field(default_factory=list, description="ban, removal, blacklist, sanction, …; repeatable.")
    source: list[str] = Field(default_factory=list, description="Outlet name; repeatable.")
    since: date | None = Field(None, ge=FIRST_DAY, le=LAST_DAY, description="First day, YYYY-MM-DD.")
    until: date | None = Field(None, ge=FIRST_DAY, le=LAST_DAY, description="Last day (inclusive), YYYY-MM-DD.")
    sort: Literal["best", "newest"] | None = Field(None, description="best (match) or newest; without words, always newest (the default).")
    page: int = Field(1, ge=1, le=MAX_PAGE, description="Page number, from 1.")
    per_page: int = Field(20, ge=1, le=MAX_PER_PAGE, description=f"Stories per page, at most {MAX_PER_PAGE}.")
    facets: bool = Field(False, description="Also count the stories of each vendor, country, action and source (the other filters applied).")

    @field_validator("vendor", "country", "action", "source", mode="before")
    @classmethod
    def _drop_blanks(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        return [v.strip() for v in values if isinstance(v, str) and v.strip()]

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_blanks(cls, data: Any) -> Any:
        """A blank scalar takes its default rather than failing validation."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in SCALARS or _blank_to_none(v) is not None}
        return data

    @model_validator(mode="after")
    def _ordered_dates(self) -> SearchParams:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"since ({self.since}) is after until ({self.until})")
        return self

    def to_query(self, config: Config, **changes: Any) -> SearchQuery:
        """The engine's query; an unknown topic is a ValueError with the known names. Without words there is no match to rank by: newest first."""
        topic = config.topic(self.topic).name if self.topic else config.topics[0].name
        fields = {
            "q": self.q,
            "mode": self.mode,
            "topic": topic,
            "relevant": self.relevant,
            "vendors": tuple(self.vendor),
            "countries": tuple(self.country),
            "actions": tuple(self.action),
            "sources": tuple(self.source),
            "since": self.since,
            "until": self.until,
            "sort": (self.sort or "best") if self.q.strip() else "newest",
            "page": self.page,
            "per_page": self.per_page,
        }
        return SearchQuery(**{**fields, **changes})
