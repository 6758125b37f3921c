"""`bm25_scores`: Okapi BM25 of a query over a small set of passages (the candidates at hand).

Embeddings blur rare words: a keyword, an operator or an exception name the question asks about
by name. BM25 rewards exactly those words, so the hybrid stage of `StagedRetriever` re-scores the
dense candidates with it. It is computed over the candidates only (their own document
frequencies), which is enough to reorder them and needs no second index.

    score(q, d) = sum over query terms t of  idf(t) * f(t, d) * (k1 + 1) / (f(t, d) + k1 * (1 - b + b * |d| / avgdl))
    idf(t)      = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))          (Lucene's form: never negative)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

K1, B = 1.5, 0.75  # the usual Okapi constants
# Question words that say nothing about the topic; over a handful of candidates their document
# frequency is too small a sample to damp them, so they are left out of the query.
STOPWORDS = frozenset("""a an and are as at be by can do does for from how i if in is it its of on or
that the this to was what when where which who why will with you your""".split())


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def bm25_scores(query: str, passages: Sequence[str], *, k1: float = K1, b: float = B) -> list[float]:
    """The BM25 score of `query` for each passage, in the passages' order (0 for no shared word)."""
    docs = [Counter(words(p)) for p in passages]
    if not docs:
        return []
    lengths = [sum(d.values()) for d in docs]
    avgdl = sum(lengths) / len(docs) or 1.0
    terms = set(words(query)) - STOPWORDS
    df = {t: sum(1 for d in docs if t in d) for t in terms}
    idf = {t: math.log(1 + (len(docs) - n + 0.5) / (n + 0.5)) for t, n in df.items()}
    return [
        sum(idf[t] * d[t] * (k1 + 1) / (d[t] + k1 * (1 - b + b * length / avgdl)) for t in terms if t in d)
        for d, length in zip(docs, lengths)
    ]
