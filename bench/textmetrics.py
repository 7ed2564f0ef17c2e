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
