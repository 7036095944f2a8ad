"""Commands over stored articles and the topic model: export, score, eval, rescore."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from monitor.classify import Document, read_labelled
from monitor.deps import utcnow
from monitor.embed import SentenceTransformerEmbedder
from monitor.export import write_atom, write_csv, write_jsonl
from monitor.rescore import rescore_all, settle_all
from monitor.store.views import export_rows
from monitor.cli.common import (
    app,
    build_scorer,
    ConfigOption,
    configure,
    DatabaseOption,
    load_app,
    progress_steps,
    topic_spec,
)


@app.command()
def export(
    format: Annotated[str, typer.Option("--format", help="jsonl, csv or atom.")] = "jsonl",
    relevant_only: Annotated[bool, typer.Option("--relevant-only", help="Only articles the topic finds relevant.")] = False,
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic name (default: the first).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="File to write (default: stdout).")] = None,
    database: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """Every stored article with its text, verdict, tags and evidence."""
    writers = {"jsonl": write_jsonl, "csv": write_csv, "atom": write_atom}
    if format not in writers:
        raise typer.BadParameter(f"{format!r} is not one of jsonl, csv, atom", param_hint="--format")
    app_ = load_app(config, database=database)
    topic_name = topic_spec(app_.config, topic).name
    stream = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
    try:
        with app_.sessions() as session:
            writers[format](export_rows(session, topic=topic_name, relevant_only=relevant_only), stream)
    finally:
        if output:
            stream.close()


def _read_jsonl(stream) -> list[tuple[dict | None, str | None]]:
    items = []
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("expected a JSON object")
            items.append((item, None))
        except ValueError as exc:
            items.append((None, f"line {number}: {exc}"))
    return items


@app.command()
def score(
    file: Annotated[str, typer.Argument(help="JSON Lines with id, title, text (optional url, published); - for stdin.")] = "-",
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic name (default: the first).")] = None,
    config: ConfigOption = None,
) -> None:
    """Score JSON Lines against a topic: one JSON line out per line in, in order."""
    app_ = load_app(config)  # the store holds the readers' labels the model learns from
    settings, spec = app_.settings, topic_spec(app_.config, topic)
    stream = sys.stdin if file == "-" else open(file, encoding="utf-8")
    with stream:
        items = _read_jsonl(stream)
    embedder = SentenceTransformerEmbedder.from_settings(settings)
    scorer = build_scorer(spec, embedder, settings, app_.sessions)
    good = [item for item, _ in items if item is not None]
    documents = [Document(str(item.get("title") or ""), str(item.get("text") or "")) for item in good]
    verdicts = iter(scorer.score(documents, embedder.embed([d.for_embedding for d in documents])))
    for item, problem in items:
        if item is None:
            print(json.dumps({"id": None, "error": problem}), flush=False)
            continue
        verdict = next(verdicts)
        print(
            json.dumps(
                {
                    "id": item.get("id"),
                    "score": verdict.score,
                    "relevant": verdict.relevant,
                    "vendors": verdict.vendors,
                    "countries": verdict.countries,
                    "actions": verdict.actions,
                    "why": verdict.why,
                },
                ensure_ascii=False,
            )
        )


@app.command("eval")
def evaluate(
    file: Annotated[Optional[Path], typer.Argument(help="Labelled JSON Lines (default: the topic's training files, cross-validated).")] = None,
    stories: Annotated[Optional[Path], typer.Option("--stories", help="Evaluate story folding instead, on JSON Lines of articles with their story group and copy_of.")] = None,
    topic: Annotated[Optional[str], typer.Option("--topic", help="Topic name (default: the first).")] = None,
    negatives: Annotated[Optional[Path], typer.Option("--negatives", help="JSON Lines of real off-topic news (title, summary, content) for the false-positive rate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as JSON.")] = False,
    config: ConfigOption = None,
) -> None:
    """Precision, recall and F1 of the topic detector (or, with --stories, of story folding) against labelled data."""
    from monitor.topic_eval import evaluate as run_evaluation
    from monitor.topic_eval import read_negatives, render

    settings, loaded = configure(config)
    spec = topic_spec(loaded, topic)
    if stories is not None:
        from monitor.story_eval import evaluate_stories, read_story_items, render_stories
        from monitor.tags import Tagger

        try:
            story_items = read_story_items(stories)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--stories") from exc
        embedder = SentenceTransformerEmbedder.from_settings(settings)
        report = evaluate_stories(story_items, embedder, Tagger(spec))
        typer.echo(json.dumps(report, indent=1) if as_json else render_stories(report))
        return
    files = [file] if file else spec.training
    if not files:
        raise typer.BadParameter(f"topic {spec.name} has no training files; give a labelled FILE")
    try:
        items = [item for path in files for item in read_labelled(path)]
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="FILE") from exc
    default_negatives = settings.config.resolve().parent.parent / "shared" / "data" / "negatives" / "feed_items.jsonl"
    negatives = negatives or (default_negatives if default_negatives.is_file() else None)
    embedder = SentenceTransformerEmbedder.from_settings(settings)
    scorer = build_scorer(spec, embedder, settings)
    cross_validate = file is None or file.resolve() in {p.resolve() for p in spec.training}
    with progress_steps() as progress:
        report = run_evaluation(
            scorer, items, cross_validate=cross_validate, negatives=read_negatives(negatives) if negatives else None, progress=progress
        )
    typer.echo(json.dumps(report, indent=1, ensure_ascii=False) if as_json else render(report))


@app.command()
def rescore(
    topic: Annotated[Optional[str], typer.Option("--topic", help="Only this topic (default: every topic).")] = None,
    database: DatabaseOption = None,
    config: ConfigOption = None,
) -> None:
    """Score every stored article again with the current topic models (after a definition changed or `monitor train`),
    without fetching anything; a reader's label wins over the model, and each story's relevance follows."""
    app_ = load_app(config, database=database)
    topics = [topic_spec(app_.config, topic)] if topic else app_.config.topics
    embedder = SentenceTransformerEmbedder.from_settings(app_.settings)
    scorers = [build_scorer(t, embedder, app_.settings, app_.sessions) for t in topics]
    counts = rescore_all(app_.sessions, scorers, embedder, now=utcnow())
    for name, (total, relevant) in counts.items():
        typer.echo(f"{name}: {total} articles scored, {relevant} relevant")
    settled = settle_all(app_.sessions, now=utcnow())
    typer.echo(
        f"stories: {settled.turned_on} became relevant (no alerts sent for them), {settled.turned_off} no longer relevant "
        f"({settled.withdrawn} alerts still owed for them withdrawn)"
    )
