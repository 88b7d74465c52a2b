"""SOPS (file format 3) with age recipients: documents as getsops/sops writes them.

Pure functions over plain data (dicts, lists, str/int/float/bool/None leaves); writing the
YAML text is the caller's business (``render.yamlio``). What is encrypted and how follows
getsops/sops:

- Values (never keys) of every leaf whose path has a key matching ``encrypted_regex``
  become ``ENC[AES256_GCM,data:..,iv:..,tag:..,type:str|int|float|bool]``: AES-256-GCM under
  the document's 32-byte data key with a 32-byte random IV, and the path joined with ':'
  plus a trailing ':' as additional data (``aes/cipher.go``, ``Tree.Encrypt`` in
  ``sops.go``). List indices are not part of the path (``walkSlice`` passes it on
  unchanged). An empty string stays empty (``isEmpty`` in ``aes/cipher.go``); null leaves
  are left alone and not hashed.
- The MAC is SHA-512 over every leaf's plaintext in document order (``ToBytes``: booleans
  as ``True``/``False``, floats in Go's shortest ``'f'`` form), upper-case hex, encrypted
  like a value with ``lastmodified`` (RFC 3339, UTC) as additional data
  (``cmd/sops/common/common.go`` ``EncryptTree``/``DecryptTree``).
- The data key is an age file (ASCII armor) for each recipient (``age/keysource.go``).
- The ``sops`` mapping comes last; since 3.13 sops writes its keys sorted by name
  (``stores/metadata.go`` ``goToSops``): ``age`` (items ``enc``, ``recipient``),
  ``encrypted_regex``, ``lastmodified``, ``mac``, ``version``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyrage
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENCRYPTED_REGEX = "^(data|stringData)$"
VERSION = "3.13.2"  # the getsops/sops release whose output this module writes
METADATA_KEY = "sops"
DATA_KEY_SIZE = 32
IV_SIZE = 32  # sops' nonceSize
TAG_SIZE = 16
UNENCRYPTED_SUFFIX = "_unencrypted"  # sops' default rule when a file names none
# sha256(b"sops"): what sops hashes first when the MAC covers only encrypted values
MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()
_ENC = re.compile(
    r"ENC\[AES256_GCM,data:([A-Za-z0-9+/]+=*),iv:([A-Za-z0-9+/]+=*),"
    r"tag:([A-Za-z0-9+/]+=*),type:([a-z0-9]+)\]"
)
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_RECIPIENT = re.compile(rf"age1[{_BECH32}]{{58}}")
_IDENTITY_PREFIX = "AGE-SECRET-KEY-1"
_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}  # strconv.ParseBool
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}

Leaf = str | int | float | bool
Path = tuple[str, ...]


class SopsError(ValueError):
    """A document that cannot be encrypted or opened; the message never holds a value."""


class NotEncrypted(SopsError):
    """The document has no ``sops`` metadata."""


class NoKey(SopsError):
    """None of the identities opens any of the document's age stanzas."""


class MacMismatch(SopsError):
    """The values do not match the document's MAC: something changed outside sops."""


@dataclass(frozen=True)
class Opened:
    document: dict[str, Any]  # plaintext, without the ``sops`` key
    data_key: bytes
    recipients: tuple[str, ...]  # in the file's order


@dataclass(frozen=True)
class _Rules:
    """Which leaves a file encrypts (sops ``Tree.shouldBeEncrypted``, key rules only)."""

    encrypted_regex: str = ""
    unencrypted_regex: str = ""
    encrypted_suffix: str = ""
    unencrypted_suffix: str = ""
    mac_only_encrypted: bool = False

    def encrypts(self, path: Path) -> bool:
        encrypted = True
        if self.unencrypted_suffix and any(k.endswith(self.unencrypted_suffix) for k in path):
            encrypted = False
        if self.encrypted_suffix:
            encrypted = any(k.endswith(self.encrypted_suffix) for k in path)
        if self.unencrypted_regex and any(_go_search(self.unencrypted_regex, k) for k in path):
            encrypted = False
        if self.encrypted_regex:
            encrypted = any(_go_search(self.encrypted_regex, k) for k in path)
        return encrypted


# ---- public API ---------------------------------------------------------------------------


def is_encrypted(document: object) -> bool:
    """A mapping with ``sops`` metadata holding a MAC (kustomize-controller's test)."""
    if not isinstance(document, Mapping):
        return False
    metadata = document.get(METADATA_KEY)
    return isinstance(metadata, Mapping) and bool(metadata.get("mac"))


def recipients_of(document: Mapping[str, Any]) -> tuple[str, ...]:
    """The age recipients a document is encrypted for, in the file's order."""
    return tuple(stanza["recipient"] for stanza in _age_stanzas(_metadata(document)))


def generate_identity() -> str:
    """A new age X25519 identity, ``AGE-SECRET-KEY-1...``."""
    return str(pyrage.x25519.Identity.generate())


def public_key(identity: str) -> str:
    """The ``age1...`` recipient of an identity."""
    return str(_identity(identity, where="identity").to_public())


def parse_identities(text: str) -> list[str]:
    """The identities of an age identity file: one ``AGE-SECRET-KEY-1`` a line, ``#``
    comments and blank lines ignored (age ``ParseIdentities``)."""
    found: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        _identity(line, where=f"line {number}")
        found.append(line)
    if not found:
        raise SopsError("no age identity found: expected a line AGE-SECRET-KEY-1...")
    return found


def check_recipient(text: str) -> str:
    """``text`` when it is an age X25519 recipient; SopsError naming the rule otherwise."""
    if text.upper().startswith(_IDENTITY_PREFIX):
        raise SopsError(
            "recipient: that is an age identity (a secret key), not a recipient; "
            "give its public key (age1...)"
        )
    rule = f"must be an age public key: 'age1' and 58 characters of {_BECH32} (62 in all)"
    if not _RECIPIENT.fullmatch(text):
        raise SopsError(f"recipient {text!r}: {rule}")
    try:
        pyrage.x25519.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        raise SopsError(f"recipient {text!r}: {rule} (its checksum is wrong)") from exc
    return text


def decrypt(
    document: Mapping[str, Any], identities: Sequence[str], *, verify_mac: bool = True
) -> Opened:
    """Open a document: the data key from any age stanza an identity opens, every
    encrypted value with its type restored, the MAC verified (``verify_mac=False`` skips
    that, as kustomize-controller does by default)."""
    metadata = _metadata(document)
    stanzas = _age_stanzas(metadata)
    rules = _rules(metadata)
    lastmodified = _lastmodified(metadata)
    parsed = [_identity(text, where=f"identity {i + 1}") for i, text in enumerate(identities)]
    data_key = _open_data_key(stanzas, parsed)
    body = {k: v for k, v in document.items() if k != METADATA_KEY}
    digest = _mac_hash(rules)

    def open_leaf(value: Leaf, path: Path) -> Leaf:
        encrypted = rules.encrypts(path)
        if encrypted:
            value = _decrypt_value(value, data_key, _aad(path), where=_show(path))
        if encrypted or not rules.mac_only_encrypted:
            digest.update(_to_bytes(value))
        return value

    plain: dict[str, Any] = _walk(body, (), open_leaf)
    recipients = tuple(stanza["recipient"] for stanza in stanzas)
    if not verify_mac:
        return Opened(document=plain, data_key=data_key, recipients=recipients)
    computed = digest.hexdigest().upper()
    stored_mac = metadata.get("mac")
    if not isinstance(stored_mac, str):
        raise MacMismatch(f"MAC mismatch. File has no MAC, computed {computed}")
    try:
        stored = _decrypt_value(stored_mac, data_key, lastmodified, where="sops.mac")
    except SopsError as exc:
        raise MacMismatch(f"Cannot decrypt MAC: {exc}") from exc
    if stored != computed:
        raise MacMismatch(f"MAC mismatch. File has {stored or 'no MAC'}, computed {computed}")
    return Opened(document=plain, data_key=data_key, recipients=recipients)


def encrypt(
    document: Mapping[str, Any],
    recipients: Sequence[str],
    *,
    data_key: bytes | None = None,
    keep: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """``document`` with every value under ``data``/``stringData`` encrypted and the
    ``sops`` metadata appended.

    ``data_key`` None draws a new key (rotation). With ``data_key`` and ``keep`` (an
    earlier encryption of this document under that key) every value whose path and
    plaintext are unchanged keeps its ENC string, and the kept age stanzas are reused when
    the recipients are the same set: only changed values, ``lastmodified`` and ``mac``
    differ from ``keep``. ``now`` (default: the current time) becomes ``lastmodified``.
    """
    wanted = list(dict.fromkeys(check_recipient(r) for r in recipients))
    if not wanted:
        raise SopsError("recipients: at least one age recipient is needed")
    if METADATA_KEY in document:
        raise SopsError(f"{METADATA_KEY}: the document already has sops metadata (key reserved)")
    key = os.urandom(DATA_KEY_SIZE) if data_key is None else data_key
    if len(key) != DATA_KEY_SIZE:
        raise SopsError(f"data_key: must be {DATA_KEY_SIZE} bytes, got {len(key)}")
    kept: dict[tuple[Path, bytes, str], str] = {}
    stanzas: list[dict[str, str]] = []
    if keep is not None and data_key is not None:
        kept = _kept_values(keep, key)
        old = _age_stanzas(_metadata(keep))
        if {s["recipient"] for s in old} == set(wanted):
            stanzas = [{"enc": s["enc"], "recipient": s["recipient"]} for s in old]
    if not stanzas:
        stanzas = [{"enc": _seal_data_key(key, r), "recipient": r} for r in wanted]
    rules = _Rules(encrypted_regex=ENCRYPTED_REGEX)
    digest = _mac_hash(rules)

    def seal_leaf(value: Leaf, path: Path) -> Leaf:
        digest.update(_to_bytes(value))
        if not rules.encrypts(path):
            return value
        previous = kept.get((path, _to_bytes(value), _type_name(value)))
        return previous or _encrypt_value(value, key, _aad(path))

    sealed: dict[str, Any] = _walk(dict(document), (), seal_leaf)
    lastmodified = _rfc3339(now or datetime.now(UTC))
    mac = _encrypt_value(digest.hexdigest().upper(), key, lastmodified)
    sealed[METADATA_KEY] = {
        "age": stanzas,
        "encrypted_regex": ENCRYPTED_REGEX,
        "lastmodified": lastmodified,
        "mac": mac,
        "version": VERSION,
    }
    return sealed


# ---- the tree -----------------------------------------------------------------------------


def _walk(value: Any, path: Path, leaf: Callable[[Leaf, Path], Leaf]) -> Any:
    """A copy of ``value`` with ``leaf`` applied to every scalar, in document order (sops
    ``walkBranch``/``walkSlice``: list items share their list's path)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SopsError(f"{_show(path)}: keys must be strings, got {type(key).__name__}")
            out[key] = _walk(item, (*path, key), leaf)
        return out
    if isinstance(value, list | tuple):
        return [_walk(item, path, leaf) for item in value]
    if value is None:
        return None
    if isinstance(value, str | bool | int | float):
        return leaf(value, path)
    raise SopsError(
        f"{_show(path)}: values must be strings, numbers, booleans or null, "
        f"got {type(value).__name__}"
    )


def _show(path: Path) -> str:
    return ".".join(path) or "(document)"


def _aad(path: Path) -> str:
    return ":".join(path) + ":"


def _mac_hash(rules: _Rules) -> Any:
    digest = hashlib.sha512()
    if rules.mac_only_encrypted:
        digest.update(MAC_ONLY_ENCRYPTED_INIT)
    return digest


def _to_bytes(value: Leaf) -> bytes:
    """sops ``ToBytes``."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return _go_float(value).encode()
    return value.encode()


def _go_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _type_name(value: Leaf) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "str"


def _go_search(pattern: str, text: str) -> bool:
    """Go ``regexp.Match`` (RE2): unlike Python's, ``$`` matches only at the very end."""
    translated = re.sub(r"(?<!\\)\$", r"\\Z", pattern)
    try:
        return re.search(translated, text) is not None
    except re.error as exc:
        raise SopsError(f"sops: regular expression {pattern!r} does not compile") from exc


# ---- values -------------------------------------------------------------------------------


def _encrypt_value(value: Leaf, key: bytes, aad: str) -> str:
    plain = _to_bytes(value)
    if isinstance(value, str) and not value:
        return ""
    iv = os.urandom(IV_SIZE)
    sealed = AESGCM(key).encrypt(iv, plain, aad.encode())
    data, tag = sealed[:-TAG_SIZE], sealed[-TAG_SIZE:]
    return (
        f"ENC[AES256_GCM,data:{_b64(data)},iv:{_b64(iv)},tag:{_b64(tag)},type:{_type_name(value)}]"
    )


def _decrypt_value(value: Leaf, key: bytes, aad: str, *, where: str) -> Leaf:
    if not isinstance(value, str):
        raise SopsError(f"{where}: expected an encrypted value, got a {_type_name(value)}")
    if value == "":
        return ""
    match = _ENC.fullmatch(value)
    if match is None:
        raise SopsError(f"{where}: not a well-formed ENC[AES256_GCM,...] value")
    data, iv, tag = (base64.b64decode(match.group(i)) for i in (1, 2, 3))
    kind = match.group(4)
    if len(iv) == 0 or len(tag) != TAG_SIZE:
        raise SopsError(f"{where}: not a well-formed ENC[AES256_GCM,...] value")
    try:
        plain = AESGCM(key).decrypt(iv, data + tag, aad.encode())
    except InvalidTag as exc:
        raise SopsError(
            f"{where}: cannot decrypt (message authentication failed: the value, its path "
            "or the data key differ from when it was encrypted)"
        ) from exc
    return _typed(plain, kind, where=where)


def _typed(plain: bytes, kind: str, *, where: str) -> Leaf:
    try:
        text = plain.decode()
    except UnicodeDecodeError as exc:
        raise SopsError(f"{where}: the decrypted value is not UTF-8") from exc
    if kind == "str":
        return text
    try:
        if kind in ("int", "int64"):
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError as exc:
        raise SopsError(f"{where}: the decrypted value is not a valid {kind}") from exc
    if kind == "bool":
        if text in _GO_TRUE:
            return True
        if text in _GO_FALSE:
            return False
        raise SopsError(f"{where}: the decrypted value is not a valid bool")
    raise SopsError(f"{where}: unsupported value type {kind!r} (str, int, float, bool)")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _kept_values(keep: Mapping[str, Any], key: bytes) -> dict[tuple[Path, bytes, str], str]:
    """(path, plaintext, type) -> ENC string of an earlier encryption under ``key``."""
    rules = _rules(_metadata(keep))
    found: dict[tuple[Path, bytes, str], str] = {}

    def remember(value: Leaf, path: Path) -> Leaf:
        if rules.encrypts(path) and isinstance(value, str) and value:
            try:
                plain = _decrypt_value(value, key, _aad(path), where=_show(path))
            except SopsError as exc:
                raise SopsError(f"keep: {exc}; keep must be encrypted with data_key") from exc
            found[(path, _to_bytes(plain), _type_name(plain))] = value
        return value

    _walk({k: v for k, v in keep.items() if k != METADATA_KEY}, (), remember)
    return found


# ---- metadata -----------------------------------------------------------------------------


def _metadata(document: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(document, Mapping) or METADATA_KEY not in document:
        raise NotEncrypted("sops metadata not found: the document has no 'sops' key")
    metadata = document[METADATA_KEY]
    if not isinstance(metadata, Mapping):
        raise SopsError("sops: must be a mapping")
    if metadata.get("key_groups"):
        raise SopsError("sops.key_groups: key groups (Shamir) are not supported")
    return metadata


def _age_stanzas(metadata: Mapping[str, Any]) -> list[dict[str, str]]:
    stanzas = metadata.get("age")
    if not isinstance(stanzas, list) or not stanzas:
        raise SopsError("sops.age: no age recipients in the file")
    found = []
    for i, stanza in enumerate(stanzas):
        if not isinstance(stanza, Mapping) or not all(
            isinstance(stanza.get(k), str) for k in ("recipient", "enc")
        ):
            raise SopsError(f"sops.age[{i}]: must have 'recipient' and 'enc' strings")
        found.append({"recipient": stanza["recipient"], "enc": stanza["enc"]})
    return found


def _rules(metadata: Mapping[str, Any]) -> _Rules:
    names = ("encrypted_regex", "unencrypted_regex", "encrypted_suffix", "unencrypted_suffix")
    given = {name: str(metadata[name]) for name in names if metadata.get(name)}
    for name in ("encrypted_comment_regex", "unencrypted_comment_regex"):
        if metadata.get(name):
            raise SopsError(f"sops.{name}: comment rules are not supported")
    if len(given) > 1:
        raise SopsError(f"sops: more than one of {', '.join(names)} in the same file")
    if not given:
        given = {"unencrypted_suffix": UNENCRYPTED_SUFFIX}
    return _Rules(**given, mac_only_encrypted=bool(metadata.get("mac_only_encrypted")))


def _lastmodified(metadata: Mapping[str, Any]) -> str:
    """``lastmodified`` as Go formats it back with ``time.RFC3339`` (the MAC's AAD)."""
    raw = metadata.get("lastmodified")
    if isinstance(raw, datetime):
        moment = raw
    else:
        try:
            moment = datetime.fromisoformat(str(raw))
        except ValueError as exc:
            raise SopsError("sops.lastmodified: must be an RFC 3339 time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return _rfc3339(moment, keep_offset=True)


def _rfc3339(moment: datetime, *, keep_offset: bool = False) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not keep_offset:
        moment = moment.astimezone(UTC)
    offset = moment.utcoffset()
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if not offset:
        return stamp + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    return f"{stamp}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# ---- age ----------------------------------------------------------------------------------


def _identity(text: str, *, where: str) -> pyrage.x25519.Identity:
    if not text.upper().startswith(_IDENTITY_PREFIX):
        raise SopsError(f"{where}: not an age identity (must start with {_IDENTITY_PREFIX})")
    try:
        return pyrage.x25519.Identity.from_str(text)
    except pyrage.IdentityError as exc:
        raise SopsError(f"{where}: not a valid age identity (bad length or checksum)") from exc


def _seal_data_key(key: bytes, recipient: str) -> str:
    parsed = pyrage.x25519.Recipient.from_str(recipient)
    return pyrage.encrypt(key, [parsed], armored=True).decode()


def _open_data_key(
    stanzas: list[dict[str, str]], identities: list[pyrage.x25519.Identity]
) -> bytes:
    if identities:
        for stanza in stanzas:
            try:
                key = pyrage.decrypt(stanza["enc"].encode(), identities)
            except pyrage.DecryptError:
                continue
            if len(key) != DATA_KEY_SIZE:
                raise SopsError(
                    f"sops.age: the data key for {stanza['recipient']} is {len(key)} bytes,"
                    f" not {DATA_KEY_SIZE}"
                )
            return key
    recipients = ", ".join(s["recipient"] for s in stanzas)
    raise NoKey(
        f"none of the {len(identities)} age identities opens the data key; "
        f"the file is encrypted for: {recipients}"
    )
