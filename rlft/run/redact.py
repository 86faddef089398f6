"""Redacting credentials from URLs and settings before rlft writes or logs them.

A recipe may hold an endpoint with credentials in it (`base_url: http://user:PASS@host/v1`,
`https://host/v1?api_key=...`); rlft copies recipes to `recipe.yaml`, the model card and its logs. Pass anything
you write through these first:

    >>> redact_url("http://user:PASS@judge.local:8000/v1?api_key=sk-1&model=x")
    'http://***@judge.local:8000/v1?api_key=***&model=x'
    >>> redact_secrets({"rewards": [{"params": {"base_url": "http://u:p@h/v1", "api_key_env": "OPENAI_API_KEY"}}]})
    {'rewards': [{'params': {'base_url': 'http://***@h/v1', 'api_key_env': 'OPENAI_API_KEY'}}]}

What is removed: the userinfo part of a URL (`user:pass@`, also a bare token as user), and the values of query
or fragment parameters whose name looks secret (key, token, secret, password, signature, credential, auth, ...:
see `SECRET_WORDS`). What is kept: everything else, byte for byte, so a redacted URL still says which host was
used. Not covered: secrets in a URL's path (some webhooks put them there) and secrets in free text.

Not here: reading keys (they come from environment variables named in the recipe, never from the recipe itself).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# A parameter or key is secret when one of its words is one of these: `api_key`, `X-Amz-Signature`, `apiKey`,
# `client_secret`, `access_token` and `pwd` are; `max_tokens`, `monkey` and `api_key_env` (see `_secret_key`) are not.
SECRET_WORDS = frozenset({"key", "apikey", "token", "accesstoken", "secret", "password", "passwd", "pwd", "pass",
                          "sig", "signature", "credential", "credentials", "auth", "authorization", "session",
                          "sessionid", "code", "bearer"})
# Keys whose string values are URLs wherever they appear in a settings tree.
URL_KEYS = re.compile(r"(^|_)(url|uri|endpoint|host|proxy)$", re.IGNORECASE)
_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^/@]*@", re.IGNORECASE)


def _words(name: str) -> list[str]:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", unquote(name))  # apiKey -> api_Key
    return [w for w in re.split(r"[^a-z0-9]+", snake.lower()) if w]


def _secret_name(name: str) -> bool:
    return any(w in SECRET_WORDS for w in _words(name))


def _redact_params(part: str) -> str:
    out = []
    for piece in re.split(r"([&;])", part):
        name, eq, _ = piece.partition("=")
        out.append(f"{name}={MASK}" if eq and _secret_name(name) else piece)
    return "".join(out)


def redact_url(url: str) -> str:
    """`url` without userinfo and without the values of secret-looking query/fragment parameters.

    Anything that is not a string is returned unchanged; a string that does not parse as a URL is returned with
    any `user:pass@` before its host removed on a best-effort basis.
    """
    if not isinstance(url, str) or not url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: mask everything up to an @ rather than leak it
        return _USERINFO.sub(lambda m: f"{m.group(1) or ''}{MASK}@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = _redact_params(parts.query) if parts.query else parts.query
    fragment = _redact_params(parts.fragment) if "=" in parts.fragment else parts.fragment
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url  # nothing to hide: return it exactly as given
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_secrets(obj: Any) -> Any:
    """A copy of a settings tree (dicts, lists, tuples) with every URL redacted.

    Redacted: string values under URL-like keys (`base_url`, `url`, `endpoint`, `*_url`, `host`, ...) and any
    other string containing `://`. Values under secret-looking keys (`api_key`, `token`, `password`, ...) are
    replaced by `***` whole; `api_key_env` (a variable's name, not a key) and counts like `max_tokens` are kept.
    """
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            name = str(key)
            if isinstance(value, str) and _secret_key(name):
                out[key] = MASK
            elif isinstance(value, str) and (URL_KEYS.search(name) or "://" in value):
                out[key] = redact_url(value)
            else:
                out[key] = redact_secrets(value)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_secrets(v) for v in obj)
    if isinstance(obj, str) and "://" in obj:
        return redact_url(obj)
    return obj


def _secret_key(name: str) -> bool:
    """A settings key that holds a secret itself (not the name of a variable, not a count)."""
    lowered = name.lower()
    if lowered.endswith(("_env", "_var", "_file", "_path", "_column")) or "tokens" in lowered:
        return False
    return _secret_name(name)
