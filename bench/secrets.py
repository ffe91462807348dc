"""Credentials stay in the process: a store's or a claims database's URI is shown, logged and
reported without its password (`user:***@host`) or secret query values, and any text leaving
the process (its stdout and stderr, error lines) has the secrets it knows of replaced."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, urlsplit

HIDDEN = "***"
# where a team puts credentials for the stores kdbench talks to (MLflow's own variables too)
SECRET_VARIABLES = ("MLFLOW_TRACKING_URI", "KDBENCH_CLAIMS")
SECRET_VALUE_VARIABLES = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
SECRET_QUERY_KEYS = re.compile(r"pass|pwd|token|secret|key|sig|credential", re.IGNORECASE)

_known: set[str] = set()  # secrets met at run time (a --claims URI, a tracking URI argument)


def secrets_of(uri: str) -> list[str]:
    """The password of a URI's user info and the values of its secret-looking query keys."""
    try:
        parts = urlsplit(uri)
        found = [parts.password] if parts.password else []
    except ValueError:  # not a URI (a bad value on its way to an error line)
        return []
    found += [v for k, v in parse_qsl(parts.query) if v and SECRET_QUERY_KEYS.search(k)]
    return found


def remember(uri: str | None) -> None:
    """Hide this URI's secrets from every later `scrub`."""
    if uri:
        _known.update(secrets_of(uri))


def redact_uri(uri: str) -> str:
    text = uri
    for secret in secrets_of(uri):
        text = text.replace(secret, HIDDEN)
    return text


def scrub(text: str) -> str:
    """`text` with every secret known to this process replaced (longest first, so a secret that
    contains another is hidden whole)."""
    secrets = set(_known)
    for name in SECRET_VARIABLES:
        secrets.update(secrets_of(os.environ.get(name, "")))
    secrets.update(v for name in SECRET_VALUE_VARIABLES if (v := os.environ.get(name)))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    return text
