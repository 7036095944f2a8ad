"""`monitor eval`: the topic detector against a labelled set, beside a keyword baseline, with tag accuracy."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from monitor.classify import Document, Labelled, TopicScorer, fitted_model, jsonl_records
from monitor.domain import TopicSpec
from monitor.evaluate import Scores, binary_scores
from monitor.tags import Tags

FOLDS = 5
EMBED_CHUNK = 128  # texts per progress step: small enough to move, large enough to batch well

Progress = Callable[[str, int, int], None]  # (step, done, total), called as the evaluation moves on


def _silent(_step: str, _done: int, _total: int) -> None:
    """The default progress report: none."""


def embed_reporting(embedder, texts: list[str], step: str, progress: Progress) -> np.ndarray:
    """Embed in chunks, reporting after each, so a long evaluation shows how far it is."""
    parts = []
    for start in range(0, len(texts), EMBED_CHUNK):
        progress(step, start, len(texts))
        parts.append(embedder.embed(texts[start : start + EMBED_CHUNK]))
    progress(step, len(texts), len(texts))
    return np.vstack(parts) if parts else embedder.embed([])

RELIABILITY_BINS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


class KeywordBaseline:
    """What keyword alerts do: any vendor name and any ban word, anywhere in the text."""

    BAN_WORDS = r"ban|bans|banned|banning|bar|bars|barred|prohibit\w*|blacklist\w*|sanction\w*|remov\w*|restrict\w*"

    def __init__(self, spec: TopicSpec):
        names = sorted({alias for aliases in spec.vendors.values() for alias in aliases} | set(spec.vendors), key=len, reverse=True)
        self.vendor = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")\b", re.IGNORECASE) if names else None
        self.ban = re.compile(rf"\b(?:{self.BAN_WORDS})\b", re.IGNORECASE)

    def relevant(self, document: Document) -> bool:
        text = document.for_embedding
        return bool(self.vendor and self.vendor.search(text) and self.ban.search(text))


def cross_validated(scorer: TopicScorer, items: list[Labelled], vectors: np.ndarray, progress: Progress = _silent) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities and decisions for every item from models that never saw it; each fold calibrates
    and picks its threshold on its own training part."""
    matrix, _, _ = scorer.featurizer.features([i.document for i in items], vectors)
    labels = np.array([i.relevant for i in items])
    probabilities = np.zeros(len(items))
    decisions = np.zeros(len(items), dtype=bool)
    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=1).split(matrix, labels)
    for fold, (train, test) in enumerate(folds):
        progress("cross-validation folds", fold, FOLDS)
        model = fitted_model(matrix[train], labels[train], scorer.featurizer, topic=scorer.spec.name, key="fold", threshold=scorer.spec.threshold)
        probabilities[test] = model.probabilities(matrix[test])
        decisions[test] = probabilities[test] >= model.threshold
    progress("cross-validation folds", FOLDS, FOLDS)
    return probabilities, decisions


def reliability(probabilities: np.ndarray, gold: np.ndarray) -> list[dict]:
    """Per bin of predicted probability: how many items, their mean prediction, and the share truly relevant."""
    table = []
    for low, high in zip(RELIABILITY_BINS, RELIABILITY_BINS[1:]):
        inside = (probabilities >= low) & ((probabilities < high) if high < 1.0 else (probabilities <= high))
        if inside.any():
            table.append(
                {"bin": f"{low:.1f}-{high:.1f}", "items": int(inside.sum()),
                 "predicted": round(float(probabilities[inside].mean()), 3), "observed": round(float(gold[inside].mean()), 3)}
            )
    return table


def per_kind(items: list[Labelled], decisions: list[bool], keywords: list[bool]) -> dict:
    """Per kind of article (eval/README.md): items, relevant ones, and the detector's and keywords' scores on them.
    A kind out of scope has no relevant item, so its figure is the share flagged (each one a false positive)."""
    report = {}
    for kind in sorted({i.kind or "unlabelled" for i in items}):
        chosen = [n for n, i in enumerate(items) if (i.kind or "unlabelled") == kind]
        gold = [items[n].relevant for n in chosen]
        entry = {"items": len(chosen), "relevant": sum(gold)}
        for name, predicted in (("detector", decisions), ("keyword_baseline", keywords)):
            picked = [predicted[n] for n in chosen]
            entry[name] = _rounded(binary_scores(picked, gold)) if any(gold) else {"flagged": round(sum(picked) / len(picked), 3)}
        report[kind] = entry
    return report


def tag_accuracy(items: list[Labelled], tags: list[Tags]) -> dict:
    """On the relevant items: vendor sets exactly right, acting country found, action sets, per action P/R."""
    pairs = [(item, tag) for item, tag in zip(items, tags) if item.relevant]
    if not pairs:
        return {}
    vendors_exact = np.mean([set(i.vendors) == set(t.vendors) for i, t in pairs])
    with_country = [(i, t) for i, t in pairs if i.countries]
    country_found = np.mean([set(i.countries) <= set(t.countries) for i, t in with_country]) if with_country else 0.0
    countries_exact = np.mean([set(i.countries) == set(t.countries) for i, t in with_country]) if with_country else 0.0
    actions_any = np.mean([bool(set(i.actions) & set(t.actions)) for i, t in pairs])
    actions_exact = np.mean([set(i.actions) == set(t.actions) for i, t in pairs])
    per_action = {}
    for action in sorted({a for i, _ in pairs for a in i.actions} | {a for _, t in pairs for a in t.actions}):
        predicted = [action in t.actions for _, t in pairs]
        gold = [action in i.actions for i, _ in pairs]
        scores = binary_scores(predicted, gold)
        per_action[action] = {"precision": round(scores.precision, 3), "recall": round(scores.recall, 3), "support": sum(gold)}
    return {
        "items": len(pairs),
        "vendors_exact": round(float(vendors_exact), 3),
        "acting_country_found": round(float(country_found), 3),
        "countries_exact": round(float(countries_exact), 3),
        "actions_overlap": round(float(actions_any), 3),
        "actions_exact": round(float(actions_exact), 3),
        "per_action": per_action,
    }


def _rounded(scores: Scores) -> dict:
    return {k: round(v, 3) for k, v in asdict(scores).items()}


def read_negatives(path: Path) -> list[Document]:
    """Real news on other topics (title, summary, content), as the pipeline would see them."""
    return [
        Document(raw.get("title") or "", raw.get("content") or raw.get("summary") or "") for _, raw in jsonl_records(path)
    ]


def evaluate(
    scorer: TopicScorer,
    items: list[Labelled],
    *,
    cross_validate: bool,
    negatives: list[Document] | None = None,
    progress: Progress = _silent,
) -> dict:
    baseline = KeywordBaseline(scorer.spec)
    vectors = embed_reporting(scorer.embedder, [i.document.for_embedding for i in items], "embedding labelled items", progress)
    gold = [i.relevant for i in items]
    if cross_validate:
        probabilities, decided = cross_validated(scorer, items, vectors, progress)
        decisions = decided.tolist()
    else:
        verdicts = scorer.score([i.document for i in items], vectors)
        probabilities, decisions = np.array([v.score for v in verdicts]), [v.relevant for v in verdicts]
    keywords = [baseline.relevant(i.document) for i in items]
    tags = [scorer.tagger.tag(i.document.title, i.document.text) for i in items]
    report = {
        "topic": scorer.spec.name,
        "items": len(items),
        "relevant_items": sum(gold),
        "method": f"{FOLDS}-fold cross-validation" if cross_validate else "model trained on the topic's training set",
        "detector": _rounded(binary_scores(decisions, gold)),
        "keyword_baseline": _rounded(binary_scores(keywords, gold)),
        "threshold": round(scorer.threshold, 3),
        "per_kind": per_kind(items, decisions, keywords),
        "reliability": reliability(probabilities, np.array(gold)),
        "tags": tag_accuracy(items, tags),
    }
    if negatives:
        vectors = embed_reporting(scorer.embedder, [d.for_embedding for d in negatives], "embedding real negatives", progress)
        verdicts = scorer.score(negatives, vectors)
        flagged = [d.title for d, v in zip(negatives, verdicts) if v.relevant]
        report["real_negatives"] = {
            "items": len(negatives),
            "detector_false_positive_rate": round(len(flagged) / len(negatives), 4),
            "keyword_false_positive_rate": round(sum(baseline.relevant(d) for d in negatives) / len(negatives), 4),
            "detector_false_positives": flagged,
        }
    return report


def render(report: dict) -> str:
    lines = [
        f"topic {report['topic']}: {report['items']} items ({report['relevant_items']} relevant), {report['method']}",
        f"{'':18}{'precision':>10}{'recall':>10}{'F1':>10}",
    ]
    for name in ("detector", "keyword_baseline"):
        s = report[name]
        lines.append(f"{name.replace('_', ' '):18}{s['precision']:>10.3f}{s['recall']:>10.3f}{s['f1']:>10.3f}")
    lines.append(f"F1 gain over keywords: {report['detector']['f1'] - report['keyword_baseline']['f1']:+.3f}; threshold {report['threshold']}")
    if "real_negatives" in report:
        n = report["real_negatives"]
        lines.append(
            f"real negatives ({n['items']}): false-positive rate detector {n['detector_false_positive_rate']:.2%}, "
            f"keywords {n['keyword_false_positive_rate']:.2%}"
        )
        lines.extend(f"  flagged: {title}" for title in n["detector_false_positives"][:10])
    lines.append(f"per kind{'':32}{'items':>6}{'rel':>5}   detector P/R/F1 or flagged   keywords")
    for kind, entry in report["per_kind"].items():
        lines.append(f"  {kind:38}{entry['items']:>6}{entry['relevant']:>5}   {_cell(entry['detector']):28}{_cell(entry['keyword_baseline'])}")
    lines.append("reliability (calibrated scores): bin, items, mean predicted, share relevant")
    lines.extend(f"  {row['bin']}  {row['items']:>5}  {row['predicted']:>6.2f}  {row['observed']:>6.2f}" for row in report["reliability"])
    tags = report["tags"]
    if tags:
        lines.append(
            f"tags on {tags['items']} relevant items: vendors exact {tags['vendors_exact']:.1%}, acting country found "
            f"{tags['acting_country_found']:.1%} (exact {tags['countries_exact']:.1%}), actions exact {tags['actions_exact']:.1%} "
            f"(overlap {tags['actions_overlap']:.1%})"
        )
        for action, s in tags["per_action"].items():
            lines.append(f"  {action:24} precision {s['precision']:.2f}  recall {s['recall']:.2f}  ({s['support']})")
    return "\n".join(lines)


def _cell(scores: dict) -> str:
    if "flagged" in scores:
        return f"flagged {scores['flagged']:.0%}"
    return f"{scores['precision']:.2f}/{scores['recall']:.2f}/{scores['f1']:.2f}"
