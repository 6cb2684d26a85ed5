"""What counts as a duplicate text: one definition for the dataset report and the audit.

Two rows are duplicates when their texts (and text pairs) are equal once normalised: stripped,
every run of whitespace collapsed to one space, casefolded. ``"Great  product!"`` and
``"great product! "`` are duplicates; ``"great product"`` and ``"great product!"`` are not.
The key is a 16-byte BLAKE2b digest, so remembering a row costs 16 bytes, not its text.
"""

from __future__ import annotations

import hashlib


def normal_text(text: str) -> str:
    """``text`` as duplicates are compared: whitespace runs collapsed, casefolded."""
    return " ".join(text.split()).casefold()


def duplicate_key(text: str, pair: str | None = None) -> bytes:
    """The digest two rows share exactly when they are duplicates."""
    key = normal_text(text) if pair is None else f"{normal_text(text)}\x00{normal_text(pair)}"
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
