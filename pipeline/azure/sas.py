"""Shared Access Signature tokens for DPS and IoT Hub (azure-notes §1.8, §2.2), pure functions.

Responsible for: building tokens as Microsoft's clients do, parsing tokens as a service must (fields in
any order, URL-encoded), verifying signatures over `sr` exactly as sent, and parsing connection strings.
Not responsible for: deciding which resource a request needs (the emulator's routes do that).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from pipeline.domain.keys import KeyFormatError, SecretKey

PREFIX = "SharedAccessSignature "
MAX_TOKEN_LENGTH = 4096


class SasError(ValueError):
    """A token or connection string that cannot be parsed or does not verify. Never holds the key."""


def sign(key: SecretKey, string_to_sign: str) -> str:
    """Return base64(HMAC-SHA256(key, string_to_sign)), the raw (not URL-encoded) signature."""
    digest = hmac.new(key.reveal(), string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def generate_token(
    resource: str,
    key: SecretKey,
    *,
    expiry: int | None = None,
    ttl: int = 3600,
    policy: str | None = None,
    encode_slashes: bool = True,
) -> str:
    """Build `SharedAccessSignature sr=..&sig=..&se=..[&skn=..]` for `resource`.

    `sr` is the resource URL-encoded (with `/` as `%2F` unless encode_slashes is False, as aziot does).
    """
    se = expiry if expiry is not None else int(time.time()) + ttl
    sr = quote(resource, safe="" if encode_slashes else "/")
    sig = sign(key, f"{sr}\n{se}")
    token = f"{PREFIX}sr={sr}&sig={quote_plus(sig)}&se={se}"
    if policy is not None:
        token += f"&skn={quote_plus(policy)}"
    return token


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A token's fields: `sr` and `se` exactly as sent, `sig` URL-decoded, `skn` if present."""

    sr: str
    sig: str
    se: str
    skn: str | None

    @property
    def resource(self) -> str:
        """The resource URI, URL-decoded (compare case-insensitively)."""
        return unquote(self.sr)

    @property
    def expiry(self) -> int:
        return int(self.se)


def parse_token(header: str) -> ParsedToken:
    """Parse an Authorization header value; raise SasError naming what is malformed."""
    if len(header) > MAX_TOKEN_LENGTH:
        raise SasError("SAS token too long")
    if not header.startswith(PREFIX):
        raise SasError("Authorization is not a SharedAccessSignature token")
    fields: dict[str, str] = {}
    for part in header[len(PREFIX) :].strip().split("&"):
        name, sep, value = part.partition("=")
        if not sep or not name:
            raise SasError(f"malformed SAS token field {name[:20]!r}")
        if name in fields:
            raise SasError(f"SAS token field {name!r} appears twice")
        fields[name] = value
    for required in ("sr", "sig", "se"):
        if not fields.get(required):
            raise SasError(f"SAS token has no {required!r}")
    # isascii(): str.isdigit() also accepts '²' and Arabic-Indic digits, which int() rejects or reads.
    if not (fields["se"].isascii() and fields["se"].isdigit()) or len(fields["se"]) > 12:
        raise SasError("SAS token expiry 'se' is not a Unix time")
    skn = fields.get("skn")
    return ParsedToken(
        sr=fields["sr"],
        sig=unquote_plus(fields["sig"]),
        se=fields["se"],
        skn=unquote_plus(skn) if skn is not None else None,
    )


def verify_signature(token: ParsedToken, key: SecretKey) -> bool:
    """Whether `sig` is the HMAC of `sr` (as sent) + newline + `se` under `key` (constant time)."""
    expected = sign(key, f"{token.sr}\n{token.se}")
    return hmac.compare_digest(expected.encode("ascii"), token.sig.encode("ascii", "replace"))


def is_expired(token: ParsedToken, now: float | None = None) -> bool:
    """Whether the token's expiry has passed."""
    return token.expiry <= (time.time() if now is None else now)


@dataclass(frozen=True, slots=True)
class ConnectionString:
    """`HostName=..;SharedAccessKeyName=..;SharedAccessKey=..` (DPS or IoT Hub service policy)."""

    host_name: str
    key_name: str
    key: SecretKey

    def __repr__(self) -> str:
        return f"ConnectionString(host_name={self.host_name!r}, key_name={self.key_name!r}, key=<hidden>)"

    def to_string(self) -> str:
        """Render back to a connection string (contains the key: never log it)."""
        return (
            f"HostName={self.host_name};SharedAccessKeyName={self.key_name};"
            f"SharedAccessKey={self.key.reveal_base64()}"
        )


def parse_connection_string(text: str, *, what: str = "connection string") -> ConnectionString:
    """Parse by `;`, each part split on the first `=`; names matched case-insensitively."""
    parts: dict[str, str] = {}
    for part in text.strip().strip(";").split(";"):
        name, sep, value = part.partition("=")
        if not sep:
            raise SasError(
                f"{what}: part {name[:30]!r} has no '='; expected HostName=..;SharedAccessKeyName=..;"
                "SharedAccessKey=.."
            )
        parts[name.strip().lower()] = value.strip()
    names = ("HostName", "SharedAccessKeyName", "SharedAccessKey")
    missing = [n for n in names if not parts.get(n.lower())]
    if missing:
        raise SasError(f"{what}: missing {', '.join(missing)}")
    try:
        key = SecretKey.from_base64(parts["sharedaccesskey"], what=f"{what} SharedAccessKey")
    except KeyFormatError as exc:  # callers catch SasError for any unusable connection string
        raise SasError(str(exc)) from None
    return ConnectionString(host_name=parts["hostname"], key_name=parts["sharedaccesskeyname"], key=key)
