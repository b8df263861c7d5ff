"""Webhook signatures (upstream-formats §C1 Trello, §D Jira)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from processors.web.signatures import verify_jira, verify_trello

# Atlassian's published test vector.
ATLASSIAN_SECRET = b"It's a Secret to Everybody"
ATLASSIAN_BODY = b"Hello World!"
ATLASSIAN_HEADER = "sha256=a4771c39fbe90f317c7824e83ddef3caae9cb3d976c214ace1f2937e133263c9"

TRELLO_SECRET = b"trello-app-secret"
CALLBACK = "https://hooks.example.com/webhooks/trello"
TRELLO_BODY = b'{"action":{"id":"5f1","type":"updateCard"},"model":{"id":"5e0"}}'


def trello_signature(secret: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(secret, message, hashlib.sha1).digest()).decode()


def test_jira_atlassian_test_vector_passes() -> None:
    assert verify_jira(ATLASSIAN_SECRET, ATLASSIAN_BODY, ATLASSIAN_HEADER)


def test_jira_hex_case_and_method_case_do_not_matter() -> None:
    assert verify_jira(ATLASSIAN_SECRET, ATLASSIAN_BODY, ATLASSIAN_HEADER.upper())


def test_jira_wrong_secret_fails() -> None:
    assert not verify_jira(b"It's a secret to everybody", ATLASSIAN_BODY, ATLASSIAN_HEADER)


def test_jira_tampered_body_fails() -> None:
    assert not verify_jira(ATLASSIAN_SECRET, b"Hello World?", ATLASSIAN_HEADER)
    assert not verify_jira(ATLASSIAN_SECRET, ATLASSIAN_BODY + b"\n", ATLASSIAN_HEADER)


@pytest.mark.parametrize("header", [
    # A correct SHA-1 HMAC under the sha1 method: only sha256 is accepted.
    "sha1=" + hmac.new(ATLASSIAN_SECRET, ATLASSIAN_BODY, hashlib.sha1).hexdigest(),
    "md5=" + hmac.new(ATLASSIAN_SECRET, ATLASSIAN_BODY, hashlib.md5).hexdigest(),
    "sha512=" + ATLASSIAN_HEADER.partition("=")[2],
    ATLASSIAN_HEADER.partition("=")[2],  # no method at all
    "sha256=",
    "sha256=" + "0" * 64,
    "sha256=" + ATLASSIAN_HEADER.partition("=")[2][:-1],  # one digit short
    "sha256=a4771c39fbe90f317c7824e83ddef3caae9cb3d976c214ace1f2937e133263cé",
])
def test_jira_other_or_unknown_method_or_bad_digest_fails(header: str) -> None:
    assert not verify_jira(ATLASSIAN_SECRET, ATLASSIAN_BODY, header)


@pytest.mark.parametrize("header", [None, ""])
def test_jira_missing_header_fails(header: str | None) -> None:
    assert not verify_jira(ATLASSIAN_SECRET, ATLASSIAN_BODY, header)


def test_trello_signature_over_body_and_callback_passes() -> None:
    header = trello_signature(TRELLO_SECRET, TRELLO_BODY + CALLBACK.encode())
    assert verify_trello(TRELLO_SECRET, TRELLO_BODY, CALLBACK, header)


def test_trello_signature_over_body_alone_fails() -> None:
    header = trello_signature(TRELLO_SECRET, TRELLO_BODY)
    assert not verify_trello(TRELLO_SECRET, TRELLO_BODY, CALLBACK, header)


@pytest.mark.parametrize("registered", [
    CALLBACK + "/",  # trailing slash
    CALLBACK.replace("https", "http"),
    CALLBACK + "?x=1",
    CALLBACK[:-1] + "O",
])
def test_trello_callback_url_differing_fails(registered: str) -> None:
    header = trello_signature(TRELLO_SECRET, TRELLO_BODY + registered.encode())
    assert not verify_trello(TRELLO_SECRET, TRELLO_BODY, CALLBACK, header)


def test_trello_wrong_secret_tampered_body_or_missing_header_fails() -> None:
    header = trello_signature(TRELLO_SECRET, TRELLO_BODY + CALLBACK.encode())
    assert not verify_trello(b"another-secret", TRELLO_BODY, CALLBACK, header)
    assert not verify_trello(TRELLO_SECRET, TRELLO_BODY + b" ", CALLBACK, header)
    assert not verify_trello(TRELLO_SECRET, TRELLO_BODY, CALLBACK, None)
    assert not verify_trello(TRELLO_SECRET, TRELLO_BODY, CALLBACK, "")
    assert not verify_trello(TRELLO_SECRET, TRELLO_BODY, CALLBACK, "é" + header)
