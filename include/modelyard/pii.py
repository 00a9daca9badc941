"""PII and secret scrubbing with typed placeholders.

Three passes: secrets, e-mails, then one alternation for the digit-based types, where the
group order is the priority (a card number wins over the phone number inside it). A Python
regex scan of every record was the curation bottleneck, so each pass first selects the
texts of a batch that could match with a loose RE2 filter run by Arrow in C++.
``PATTERNS`` is shared with the Great Expectations gate, which checks that nothing the
scrubber looks for is left.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_SECRET_FORMS = (
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key id
    r"(?i:aws_secret_access_key)\s*[:=]\s*[A-Za-z0-9/+=]{40}",
    r"\b[Bb]earer\s+[A-Za-z0-9\-._~+/]{16,}=*",
    r"\b(?:ghp|gho|ghs|github_pat)_[A-Za-z0-9_]{20,}",  # GitHub tokens
    r"\bsk-[A-Za-z0-9_\-]{20,}",  # OpenAI-style API keys
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",  # Slack tokens
    r"\bhf_[A-Za-z0-9]{30,}",  # Hugging Face tokens
    r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe secret and restricted keys
    r"\bAIza[0-9A-Za-z_\-]{35}",  # Google API keys
    r"\bglpat-[A-Za-z0-9_\-]{20,}",  # GitLab personal access tokens
    # An HTTP credential header pasted into a prompt: the value, whatever its scheme.
    r"(?i:authorization|proxy-authorization|x-api-key|api-key)\s*:\s*[^\s\"']+(?:[ \t]+[^\s\"']+)?",
)
PATTERNS: dict[str, str] = {
    "SECRET": "|".join(_SECRET_FORMS),
    "EMAIL": r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}\b",
    "IBAN": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
    "US_SSN": r"\b\d{3}-\d{2}-\d{4}\b",
    "CREDIT_CARD": r"\b\d(?:[ \-]?\d){12,18}\b",
    "IP_ADDRESS": r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b",
    "PHONE": (
        r"(?<![\w+])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .\-]?\d{3,4}[ .\-]?\d{3,4}\b"
    ),
}


def _alternation(*kinds: str) -> re.Pattern:
    return re.compile("|".join(f"(?P<{kind}>{PATTERNS[kind]})" for kind in kinds))


# Exact patterns in priority order, and one RE2 filter that every match of any of them also
# matches (cards, SSNs, IPs and phones all hold a run of 7+ digits and separators; an IBAN
# starts with two capitals and two digits, then four letters or digits): a single C++
# pass picks the few texts the Python patterns need to see.
_PASSES = (
    _alternation("SECRET"),
    _alternation("EMAIL"),
    _alternation("IBAN", "US_SSN", "CREDIT_CARD", "IP_ADDRESS", "PHONE"),
)
_LOOSE = (
    r"PRIVATE KEY|AKIA|ASIA|(?i:aws_secret_access_key)|[Bb]earer|gh[pos]_|github_pat_|sk-|xox"
    r"|hf_|_live_|_test_|AIza|glpat-|(?i:authorization|api-key)"
    r"|@|[\d(+][\d ().\-+]{6,}|\b[A-Z]{2}\d{2} ?[A-Z0-9]{4}"
)


def _candidates(texts: list[str]) -> list[int]:
    hits = pc.match_substring_regex(pa.array(texts, pa.large_string()), _LOOSE)
    return np.flatnonzero(hits.to_numpy(zero_copy_only=False)).tolist()


def luhn_valid(number: str) -> bool:
    """Card numbers carry a Luhn check digit; other long digit runs (ids, amounts) do not."""
    digits = [int(c) for c in number if c.isdigit()]
    checksum = sum(digits[-1::-2]) + sum(sum(divmod(2 * d, 10)) for d in digits[-2::-2])
    return checksum % 10 == 0


def _placeholder(match: re.Match, counts: Counter) -> str:
    kind = match.lastgroup
    if kind == "CREDIT_CARD" and not luhn_valid(match.group()):
        return match.group()
    counts[kind] += 1
    return f"<{kind}>"


def scrub_batch(texts: list[str], counts: Counter) -> list[str]:
    """``texts`` with each PII match replaced by ``<TYPE>``; ``counts`` is updated per type."""
    texts = list(texts)
    for i in _candidates(texts):
        for pattern in _PASSES:
            texts[i] = pattern.sub(lambda m: _placeholder(m, counts), texts[i])
    return texts


def find_batch(texts: list[str]) -> list[list[str]]:
    """Types of PII present in each text (cards Luhn-checked), for the gate."""
    found: list[list[str]] = [[] for _ in texts]
    for i in _candidates(texts):
        for pattern in _PASSES:
            found[i] += [
                m.lastgroup
                for m in pattern.finditer(texts[i])
                if m.lastgroup != "CREDIT_CARD" or luhn_valid(m.group())
            ]
    return found
