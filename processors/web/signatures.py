"""Webhook signature checks (upstream-formats §C1, §D): pure functions, no I/O.

Both signatures cover the raw request bytes, so they are checked before anything parses or
re-serialises the body. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

# Jira may change the method one day (its docs say to parse `method=`); only the ones listed
# here are accepted, anything else fails closed.
_JIRA_METHODS = {"sha256": hashlib.sha256}


def verify_jira(secret: bytes, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature: sha256=<lowercase hex HMAC-SHA256(secret, raw body)>`."""
    if not header:
        return False
    method, sep, given = header.strip().partition("=")
    digest = _JIRA_METHODS.get(method.strip().lower())
    if not sep or digest is None or not given:
        return False
    expected = hmac.new(secret, body, digest).hexdigest()
    # Hex is case-insensitive; compare_digest on ASCII str is constant-time for equal lengths.
    try:
        return hmac.compare_digest(expected, given.strip().lower())
    except TypeError:  # non-ASCII characters in the header
        return False


def verify_trello(secret: bytes, body: bytes, callback_url: str, header: str | None) -> bool:
    """`X-Trello-Webhook: base64(HMAC-SHA1(app secret, raw body + callbackURL))`, with the
    callback URL exactly as registered (a trailing slash or query string matters)."""
    if not header:
        return False
    mac = hmac.new(secret, body + callback_url.encode("utf-8"), hashlib.sha1).digest()
    expected = base64.b64encode(mac)
    try:
        given = header.strip().encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, given)
