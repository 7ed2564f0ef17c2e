"""Text accuracy metrics: character and word error rates after a documented normalisation.

Normalisation: Unicode NFKC, then every run of whitespace becomes one space, ends trimmed;
optionally case-folded (for ground truth that is all upper-case, such as SROIE).
"""

from __future__ import annotations

import re
import unicodedata

from rapidfuzz.distance import Levenshtein


def normalize(text: str, casefold: bool = False) -> str:
    text = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()
    return text.casefold() if casefold else text


def cer(hypothesis: str, reference: str, casefold: bool = False) -> float:
    """Edit distance over characters / reference length (0 = perfect; can exceed 1)."""
    hyp, ref = normalize(hypothesis, casefold), normalize(reference, casefold)
    if not ref:
        return 0.0 if not hyp else 1.0
    return Levenshtein.distance(hyp, ref) / len(ref)


def wer(hypothesis: str, reference: str, casefold: bool = False) -> float:
    hyp = normalize(hypothesis, casefold).split()
    ref = normalize(reference, casefold).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    return Levenshtein.distance(hyp, ref) / len(ref)


def bag_wer(hypothesis: str, reference: str, casefold: bool = False) -> float:
    """Word error rate without the order: the larger of the words missing and the words extra
    (as multisets) over the reference's words. A text read right in another order scores 0."""
    from collections import Counter

    hyp = Counter(normalize(hypothesis, casefold).split())
    ref = Counter(normalize(reference, casefold).split())
    if not ref:
        return 0.0 if not hyp else 1.0
    return max(sum((ref - hyp).values()), sum((hyp - ref).values())) / sum(ref.values())


def order_error(
    hypothesis: str, reference: str, casefold: bool = False, min_similarity: float = 0.6
) -> float:
    """How much of the reading order is wrong, apart from misread characters: each reference line is
    matched to its most similar hypothesis line (similarity >= ``min_similarity``); the matched lines
    that are out of order are those outside the longest in-order run (longest increasing subsequence
    of their positions). Returns their share of the matched lines: 0 = the order is right."""
    from rapidfuzz import fuzz, process

    ref = [normalize(line, casefold) for line in reference.splitlines() if line.strip()]
    hyp = [normalize(line, casefold) for line in hypothesis.splitlines() if line.strip()]
    if not ref or not hyp:
        return 0.0
    positions = []
    for line in ref:
        best = process.extractOne(line, hyp, scorer=fuzz.ratio, score_cutoff=min_similarity * 100)
        if best is not None:
            positions.append(best[2])
    if not positions:
        return 0.0
    return 1 - _longest_increasing(positions) / len(positions)


def _longest_increasing(values: list[int]) -> int:
    """Length of the longest non-decreasing subsequence (patience sorting)."""
    import bisect

    tails: list[int] = []
    for v in values:
        i = bisect.bisect_right(tails, v)
        if i == len(tails):
            tails.append(v)
        else:
            tails[i] = v
    return len(tails)
