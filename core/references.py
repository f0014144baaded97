"""What a user would use instead of the fine-tuned model, asked the same test items.

A fine-tune is worth deploying only if it beats what a team already has or could have in seconds. Each
reference answers every test item the model answered, so the two are compared item by item (paired):

- ``majority``: always the commonest label of the training split (scikit-learn's ``DummyClassifier``);
- ``classifier``: TF-IDF word and character n-grams and a logistic regression, one per labelled field, fitted on
  every training input (scikit-learn; seconds on a CPU; the settings below are fixed and recorded in the report);
- ``base``: the base model zero-shot with the output schema enforced while decoding, which is what a user gets
  from the base model through Ollama's ``format`` (its answers come from an evaluation of the base model, see
  :func:`from_predictions`);
- ``retrieval`` (free-text fields, such as a reply): the training answer of the nearest training input of the
  same language by TF-IDF cosine, a reference for chrF.

A reference's answer to an item is a dict of field → value (labels as :func:`lingoforge.metrics.label` keys), or
``None`` where it has no usable answer (the base model's answer broke the schema).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .metrics import label
from .scoring import field_value
from .task import Example, Task

CLASSIFIER_SETTINGS: dict[str, Any] = {
    "features": [
        {"analyzer": "word", "ngram_range": [1, 2], "sublinear_tf": True},
        {"analyzer": "char_wb", "ngram_range": [2, 5], "sublinear_tf": True},
    ],
    "logistic_regression": {"C": 10.0, "max_iter": 2000},
}
RETRIEVAL_SETTINGS: dict[str, Any] = {"analyzer": "char_wb", "ngram_range": [2, 5], "sublinear_tf": True,
                                      "same_language": True}
SHORT = {"majority": "commonest label", "classifier": "TF-IDF classifier", "base": "base + schema",
         "retrieval": "nearest answer"}  # table headers
TITLES = {
    "majority": "the commonest label",
    "classifier": "a TF-IDF classifier",
    "base": "the base model with the schema",
    "retrieval": "the nearest training answer",
}

Answer = Mapping[str, Any] | None


@dataclass(frozen=True)
class Reference:
    """One reference's answers to the test items, in their order."""

    name: str
    answers: tuple[Answer, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES.get(self.name, self.name)


def majority(task: Task, train: Sequence[Example], test: Sequence[Example]) -> Reference:
    """Per labelled field, always the commonest training label (what a model that learned only the prior says).

    Not the commonest label of the item's language: that would read the language from the test data, which a
    deployed model is not given (and would answer a ``language`` field perfectly)."""
    from sklearn.dummy import DummyClassifier

    answers: list[dict[str, Any]] = [{} for _ in test]
    for name in task.fields:
        fitted = _dummy(DummyClassifier, [label(field_value(e.output, name)) for e in train])
        value = str(fitted.predict([[0]])[0])
        for answer in answers:
            answer[name] = value
    return Reference("majority", tuple(answers), {"strategy": "most_frequent", "fitted_on": "every training row"})


def _dummy(cls: Any, labels: list[str]) -> Any:
    return cls(strategy="most_frequent").fit([[0]] * len(labels), labels)


def classifier_pipeline() -> Any:
    """The classical classifier every labelled field gets, built from :data:`CLASSIFIER_SETTINGS`."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = [TfidfVectorizer(**{**f, "ngram_range": tuple(f["ngram_range"])})
                for f in CLASSIFIER_SETTINGS["features"]]
    return make_pipeline(make_union(*features), LogisticRegression(**CLASSIFIER_SETTINGS["logistic_regression"]))


def classifier(task: Task, train: Sequence[Example], test: Sequence[Example]) -> Reference:
    """Per labelled field, a TF-IDF + logistic regression classifier fitted on every training input.

    A field with one training label cannot fit a regression; it answers that label (the majority's answer)."""
    answers: list[dict[str, Any]] = [{} for _ in test]
    inputs = [ex.input for ex in train]
    for name in task.fields:
        labels = [label(field_value(e.output, name)) for e in train]
        if len(set(labels)) < 2:
            predicted = [labels[0]] * len(test)
        else:
            predicted = [str(p) for p in classifier_pipeline().fit(inputs, labels).predict([e.input for e in test])]
        for answer, value in zip(answers, predicted, strict=True):
            answer[name] = value
    return Reference("classifier", tuple(answers), CLASSIFIER_SETTINGS)


def retrieval(task: Task, train: Sequence[Example], test: Sequence[Example]) -> Reference:
    """Per free-text field, the training answer of the most similar training input (TF-IDF cosine), taken from
    training inputs of the item's language when there are any, so the reply is in the right language."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    settings = {k: v for k, v in RETRIEVAL_SETTINGS.items() if k != "same_language"}
    vectorizer = TfidfVectorizer(**{**settings, "ngram_range": tuple(settings["ngram_range"])})
    matrix = vectorizer.fit_transform([ex.input for ex in train])
    queries = vectorizer.transform([ex.input for ex in test])
    similarity = (queries @ matrix.T).toarray()
    languages = [ex.language for ex in train]
    answers = []
    for row, ex in zip(similarity, test, strict=True):
        pool = [i for i, lang in enumerate(languages) if lang == ex.language] or list(range(len(train)))
        nearest = train[max(pool, key=lambda i: row[i])]
        answers.append({name: field_value(nearest.output, name) for name in task.text_fields})
    return Reference("retrieval", tuple(answers), RETRIEVAL_SETTINGS)


def from_predictions(name: str, task: Task, records: Sequence[Mapping[str, Any]],
                     settings: Mapping[str, Any] | None = None) -> Reference:
    """A model's evaluation records (``predictions``) as a reference: its usable answers, and for an answer that
    broke the schema the top-level labels it completed before it did. Constrained decoding writes the fields in the
    schema's order, labels first, so a base model that rambles in a free-text field until ``max_new_tokens`` has
    still answered every label; counting those labels keeps the reference as strong as what a user would get with
    a larger token budget."""
    answers: list[Answer] = []
    for r in records:
        if r["valid"]:
            answer = {f: label(field_value(r["output"], f)) for f in task.fields}
            answer.update({f: field_value(r["output"], f) for f in task.text_fields})
        else:
            answer = completed_labels(task, str(r.get("raw") or "")) or None
        answers.append(answer)
    return Reference(name, tuple(answers), dict(settings or {}))


def completed_labels(task: Task, raw: str) -> dict[str, str]:
    """The top-level labelled fields a cut JSON answer completed (``"category": "shipping"``), as labels; a value
    the schema does not allow is left out."""
    out = {}
    for name in task.fields:
        if "." in name:
            continue
        match = re.search(re.escape(json.dumps(name)) + r'\s*:\s*("(?:[^"\\]|\\.)*")', raw)
        if match is None:
            continue
        try:
            value = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        allowed = task.label_values(name)
        if not allowed or value in allowed:
            out[name] = label(value)
    return out


def build_references(task: Task, train: Sequence[Example], test: Sequence[Example]) -> list[Reference]:
    """The references computed from the training split alone: majority and classifier for labelled fields,
    retrieval for free-text ones. ``[]`` without training examples."""
    if not train or not test:
        return []
    out = []
    if task.fields:
        out += [majority(task, train, test), classifier(task, train, test)]
    if task.text_fields:
        out.append(retrieval(task, train, test))
    return out
