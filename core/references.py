"""What a user would use instead of the fine-tuned model, asked the same test items.

A fine-tune is worth deploying only if it beats what a team already has or could have in seconds. Each
reference answers every test item the model answered, so the two are compared item by item (paired):

- ``majority``: always the commonest training label of the item's language (scikit-learn's ``DummyClassifier``,
  fitted per language; the whole training split's commonest label for a language it lacks);
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

from collections import defaultdict
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
    """Per labelled field, the commonest training label of each test item's language."""
    from sklearn.dummy import DummyClassifier

    by_language: dict[str, list[Example]] = defaultdict(list)
    for ex in train:
        by_language[ex.language].append(ex)
    answers: list[dict[str, Any]] = [{} for _ in test]
    for name in task.fields:
        fitted = {lang: _dummy(DummyClassifier, [label(field_value(e.output, name)) for e in rows])
                  for lang, rows in by_language.items()}
        everyone = _dummy(DummyClassifier, [label(field_value(e.output, name)) for e in train])
        for answer, ex in zip(answers, test, strict=True):
            answer[name] = str(fitted.get(ex.language, everyone).predict([[0]])[0])
    return Reference("majority", tuple(answers), {"strategy": "most_frequent", "per": "language"})


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
    """A model's evaluation records (``predictions``) as a reference: its usable answers, ``None`` for the rest."""
    answers: list[Answer] = []
    for r in records:
        if not r["valid"]:
            answers.append(None)
            continue
        answer = {f: label(field_value(r["output"], f)) for f in task.fields}
        answer.update({f: field_value(r["output"], f) for f in task.text_fields})
        answers.append(answer)
    return Reference(name, tuple(answers), dict(settings or {}))


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
