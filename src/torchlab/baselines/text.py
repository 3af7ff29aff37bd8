"""The text classification baseline: TF-IDF features and a linear support-vector machine."""

from __future__ import annotations

from typing import Any

from torchlab.data.base import TargetKind
from torchlab.errors import ConfigError
from torchlab.registry import BASELINES


@BASELINES.register("tfidf_svm")
def tfidf_svm(
    kind: TargetKind,
    /,
    *,
    ngram_max: int = 2,
    sublinear_tf: bool = True,
    min_df: int = 1,
    C: float = 1.0,
) -> Any:
    """``TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))`` + ``LinearSVC()`` on raw texts.

    Text sources hand it the raw texts (``DataBundle.baseline_inputs``); on BBC News with
    the stratified 80/20 split of seed 0 it scores 0.9865 test accuracy.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline
    from sklearn.svm import LinearSVC

    if kind != "categorical":
        raise ConfigError(
            f"baseline tfidf_svm classifies texts; it cannot fit {kind} targets. Remove the baseline "
            "or pick one for that task."
        )
    vectorizer = TfidfVectorizer(
        sublinear_tf=sublinear_tf, ngram_range=(1, ngram_max), min_df=min_df
    )
    return make_pipeline(vectorizer, LinearSVC(C=C))
