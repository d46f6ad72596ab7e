"""One redaction for every string that leaves the process: messages, mail, logs, files.

What is hidden (replaced by ***):

- the password of `scheme://user:password@host` anywhere in a text, even one holding
  `/`, `#`, `?`, `@` or `:` (the credentials end at the last `@` before a host name);
- a lone token in `scheme://token@host`;
- the value of a secret query parameter (`?token=`, `&password=`, `?api_key=`, `?sig=`,
  `?X-Amz-Signature=`, ... any key that is or ends in one of SECRET_QUERY_KEYS),
  case-insensitively;
- the values of the environment variables that hold secrets (MLFLOW_TRACKING_PASSWORD,
  MLFLOW_TRACKING_TOKEN, RUNREPORT_SMTP_PASSWORD), wherever they appear;
- every secret the process was given in a URI (`remember_secrets_of`: the password and
  the secret query values of each tracking URI, as given and percent-decoded), wherever
  it appears: a password with a space or other characters no pattern expects is hidden
  by its value.

It errs on the side of hiding: `http://host:5000/x?mail=a@b.org` shows as
`http://host:***@b.org`.
"""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl, unquote, urlsplit

SECRET_QUERY_KEYS = frozenset(
    {
        "password", "passwd", "pwd", "token", "secret", "key", "apikey", "api_key",
        "access_token", "sig", "signature", "credential", "credentials", "auth",
        "sessionid", "session", "session_id", "jwt", "bearer", "sas",
    }
)  # fmt: skip
SECRET_ENV_VARS = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "RUNREPORT_SMTP_PASSWORD")

_SCHEME = r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)"
_USER = r"(?P<user>[^\s/?#@:]*)"
_HOST_AHEAD = r"(?=\[[0-9A-Fa-f:.]+\]|[\w\-.~%]+)"


def _credentials_pattern(password: str) -> re.Pattern[str]:
    # the password part is greedy, so it runs to the last `@` that a host name follows
    return re.compile(rf"{_SCHEME}{_USER}(?P<password>:{password})?@{_HOST_AHEAD}")


_TEXT_CREDENTIALS = _credentials_pattern(r"\S*")  # a URI inside text ends at white space
_URI_CREDENTIALS = _credentials_pattern(r".*")  # a URI alone may even hold spaces
_QUERY_VALUE = re.compile(
    r"(?P<lead>[?&;](?P<key>[\w.\-]+)=)(?P<value>[^&\s]*?)(?P<tail>['\"<>)\]},;]*)(?=[&\s]|$)"
)
_KEY_WORDS = re.compile(r"[_.\-]")
MASK = "***"
# secrets met in URIs this process was given (remember_secrets_of)
_KNOWN_SECRETS: set[str] = set()


def remember_secrets_of(uri: str) -> None:
    """Hide this URI's password and secret query values wherever they appear from now on,
    whatever characters they hold."""
    try:
        parts = urlsplit(uri)
        password = parts.password
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return
    given = [password] if password else []
    given += [value for key, value in query if is_secret_key(key)]
    for value in given:
        _KNOWN_SECRETS.update({value, unquote(value)})


def redact_text(text: str) -> str:
    """`text` with every credential it holds replaced by ***: for messages, logs, mail."""
    return _redact(text, _TEXT_CREDENTIALS)


def redact_uri(uri: str) -> str:
    """One URI (a tracking URI, say) with its user's password, or its lone token, and its
    secret query values replaced by ***; everything else as given."""
    return _redact(uri, _URI_CREDENTIALS)


def is_secret_key(name: str) -> bool:
    """A query parameter whose value is a secret: `token`, `access_token`, `X-Amz-Signature`."""
    lowered = name.lower()
    return lowered in SECRET_QUERY_KEYS or _KEY_WORDS.split(lowered)[-1] in SECRET_QUERY_KEYS


def _redact(text: str, credentials: re.Pattern[str]) -> str:
    text = credentials.sub(_mask_credentials, text)
    text = _QUERY_VALUE.sub(_mask_query_value, text)
    for secret in _secret_values():
        text = text.replace(secret, MASK)
    return text


def _mask_credentials(match: re.Match[str]) -> str:
    if match.group("password") is None:
        return f"{match.group('scheme')}{MASK}@"
    return f"{match.group('scheme')}{match.group('user')}:{MASK}@"


def _mask_query_value(match: re.Match[str]) -> str:
    if not is_secret_key(match.group("key")) or not match.group("value"):
        return match.group(0)
    return f"{match.group('lead')}{MASK}{match.group('tail')}"


def _secret_values() -> list[str]:
    # values this short would mask ordinary words; such a secret protects nothing anyway
    values = [os.environ.get(name, "") for name in SECRET_ENV_VARS] + list(_KNOWN_SECRETS)
    return sorted({value for value in values if len(value) >= 4}, key=len, reverse=True)
