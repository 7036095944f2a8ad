"""Commands that learn from the reader: label (a verdict on an article or a story) and train (fold the verdicts in)."""

from __future__ import annotations

import getpass
import re
from typing import Annotated

import typer

from monitor.cli.common import (
    App,
    ConfigOption,
    DatabaseOption,
    app,
    load_app,
    progress_steps,
    readers_training,
    shipped_training,
    topic_spec,
)
from monitor.dedup import canonical_url
from monitor.embed import SentenceTransformerEmbedder
from monitor.deps import utcnow
from monitor.store import feedback

ARCHIVE_PAGE = re.compile(r"(?:^|/)(stories|articles)/(\d+)/?(?:[?#].*)?$")
TopicOption = Annotated[str | None, typer.Option("--topic", help="Topic name (default: the first).")]


def find_target(app_: App, given: str) -> tuple[feedback.Target, str]:
    """What TARGET names, and how to say it: a stored article's URL (as linked or canonical), an archive page
    (…/stories/12, …/articles/34, with or without the archive's host), or a story's id."""
    text = given.strip()
    with app_.sessions() as session:
        target = feedback.article_target(session, urls=[text, canonical_url(text)]) if "://" in text else None
        if target is not None:
            return target, f"article {target.article_id}"
        page = ARCHIVE_PAGE.search(text)
        if page and page.group(1) == "articles":
            target = feedback.article_target(session, article_id=int(page.group(2)))
            if target is not None:
                return target, f"article {target.article_id}"
        story = int(page.group(2)) if page and page.group(1) == "stories" else int(text) if text.isdigit() else None
        if story is not None and (target := feedback.story_target(session, story)) is not None:
            return target, f"story {story}"
    raise typer.BadParameter(
        f"{given!r} is no stored article's URL, archive page (…/stories/ID, …/articles/ID) or story id", param_hint="TARGET"
    )


@app.command()
def label(
    target: Annotated[str, typer.Argument(help="An article's URL, an archive page (…/stories/12, …/articles/34) or a story's id.")],
    relevant: Annotated[bool | None, typer.Option("--relevant/--not-relevant", help="The reader's verdict.", show_default=False)] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who says so (default: the login name).")] = None,
    note: Annotated[str, typer.Option("--note", help="Why, in a few words.")] = "",
    topic: TopicOption = None,
    database: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """A reader's verdict on an article or a whole story: it wins over the model at once, and `monitor train` learns from it."""
    if relevant is None:
        raise typer.BadParameter("say --relevant or --not-relevant", param_hint="--relevant/--not-relevant")
    app_ = load_app(config, database=database)
    spec = topic_spec(app_.config, topic)
    found, name = find_target(app_, target)
    with app_.sessions.begin() as session:
        stored, settled = feedback.add_label(session, found, topic=spec.name, relevant=relevant, by=by or _login(), note=note, now=utcnow())
    verdict = "relevant" if stored.relevant else "not relevant"
    typer.echo(f"{name} labelled {verdict} to {spec.name} by {stored.by}")
    if settled.turned_off:
        typer.echo(f"story {found.story_id} is no longer relevant; alerts still owed for it withdrawn: {settled.withdrawn}")
    elif settled.turned_on:
        typer.echo(f"story {found.story_id} is now relevant (no alert is sent for it)")
    typer.echo("`monitor train` folds the labels into the topic's model; `monitor rescore` then applies it to every stored article")


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@app.command()
def train(topic: TopicOption = None, database: DatabaseOption = None, config: ConfigOption = None) -> None:
    """Fold the readers' labels into the topic's training set and retrain it, with cross-validated figures before and after."""
    from monitor.training import render, train_with_labels

    app_ = load_app(config, database=database)
    spec = topic_spec(app_.config, topic)
    shipped = shipped_training(spec)
    if not shipped:
        raise typer.BadParameter(f"topic {spec.name} has no training files to extend", param_hint="--topic")
    before = readers_training(app_.sessions, spec)
    with app_.sessions.begin() as session:
        feedback.fold(session, topic=spec.name, now=utcnow())
    after = readers_training(app_.sessions, spec)
    if not after:
        typer.echo(f"no readers' labels for {spec.name} yet: give them with `monitor label` or the archive's buttons")
        return
    embedder = SentenceTransformerEmbedder.from_settings(app_.settings)
    with progress_steps() as progress:
        report = train_with_labels(spec, embedder, shipped, before, after, cache_dir=app_.settings.model_cache, progress=progress)
    typer.echo(render(report))
