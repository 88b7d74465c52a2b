"""What looks like a credential in plaintext: the env values ``validate`` flags and
``gitops-bridge secrets migrate`` moves into encrypted Secrets. Heuristics, named in the
reason each finding gives; a finding never repeats the value."""

from __future__ import annotations

import re

_NAME = re.compile(
    r"(^|_)(PASSWORD|PASSWD|PASS|PWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|"
    r"CREDENTIALS?|AUTH)$",
    re.IGNORECASE,
)
_URL_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@")
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def reason(name: str, value: str) -> str | None:
    """Why an env entry looks like a credential (None: it does not); empty values never do."""
    if not value:
        return None
    if _PRIVATE_KEY.search(value):
        return "holds a private key"
    if _URL_PASSWORD.match(value):
        return "is a URL with a password"
    found = _NAME.search(name)
    if found:
        return f"the name ends in {found.group(2).upper()}"
    return None
