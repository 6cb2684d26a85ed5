"""Webhook signatures (app/webhooks/signing.py): what a receiver's check accepts and refuses."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest

from app.webhooks.signing import compute, parse, sign, verify_signature

SECRET = "whsec_test-secret"
BODY = '{"id":"evt_1","type":"job.succeeded","data":{"id":"job_1","status":"succeeded"}}'
NOW = 1_800_000_000


def test_a_valid_signature_verifies() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    assert header.startswith(f"t={NOW},v1=")
    # the documented construction, computed independently
    expected = hmac.new(SECRET.encode(), f"{NOW}.{BODY}".encode(), hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"
    assert verify_signature(SECRET, header, BODY, now=NOW)
    assert verify_signature(SECRET, header, BODY.encode(), now=NOW + 299)  # bytes body too
    assert verify_signature(SECRET.encode(), header, BODY, now=NOW - 299)  # a fast receiver


def test_signed_now_by_default() -> None:
    assert verify_signature(SECRET, sign(SECRET, BODY), BODY)


def test_a_tampered_body_is_refused() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    tampered = BODY.replace("succeeded", "failed", 1)
    assert not verify_signature(SECRET, header, tampered, now=NOW)
    assert not verify_signature(SECRET, header, BODY + " ", now=NOW)


def test_an_old_timestamp_is_refused() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    assert not verify_signature(SECRET, header, BODY, now=NOW + 301)
    assert not verify_signature(SECRET, header, BODY, now=NOW - 301)  # from the future
    assert verify_signature(SECRET, header, BODY, tolerance_s=3600, now=NOW + 3000)


def test_a_replayed_signature_with_a_new_timestamp_is_refused() -> None:
    """Moving the timestamp forward (to pass the tolerance) breaks the signature."""
    old = sign(SECRET, BODY, timestamp=NOW - 3600)
    replayed = old.replace(f"t={NOW - 3600}", f"t={NOW}")
    assert not verify_signature(SECRET, replayed, BODY, now=NOW)


def test_the_wrong_secret_is_refused() -> None:
    header = sign(SECRET, BODY, timestamp=NOW)
    assert not verify_signature("whsec_another", header, BODY, now=NOW)
    assert not verify_signature(SECRET, sign("whsec_another", BODY, timestamp=NOW), BODY, now=NOW)


def test_one_of_several_signatures_may_match() -> None:
    """A receiver may be sent two v1 values (while a secret is rotated)."""
    good = compute(SECRET, NOW, BODY)
    header = f"t={NOW},v1={'0' * 64},v1={good}"
    assert parse(header) == (NOW, ["0" * 64, good])
    assert verify_signature(SECRET, header, BODY, now=NOW)


@pytest.mark.parametrize(
    "header",
    ["", "garbage", f"t={NOW}", "v1=abc", f"t=soon,v1={'a' * 64}", f"t={NOW},v0=abc", "t=,v1="],
)
def test_malformed_headers_are_refused(header: str) -> None:
    assert not verify_signature(SECRET, header, BODY, now=NOW)


def test_non_ascii_in_the_header_is_refused_not_raised() -> None:
    assert not verify_signature(SECRET, f"t={NOW},v1=\u00e9\u00e9", BODY, now=NOW)


def test_the_module_needs_only_the_standard_library() -> None:
    """Receivers can copy it: it runs with nothing of the project importable but itself."""
    source = Path(__file__).resolve().parents[2] / "app" / "webhooks" / "signing.py"
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('signing', {str(source)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "h = m.sign('s', 'b'); assert m.verify_signature('s', h, 'b')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in {'app', 'pydantic', "
        "'sqlalchemy', 'fastapi', 'httpx'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
