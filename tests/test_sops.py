"""Proves sops.py writes SOPS files two independent implementations open: the npm package
sops-age decrypts them to exactly the values set, Debian's age CLI opens every data-key
stanza; that AAD, MAC and metadata follow getsops/sops; that any change outside sops (an ENC
byte, a plaintext field, values swapped between keys) is refused; and that re-encrypting with
the same key changes only the lines that changed."""

from __future__ import annotations

import base64
import difflib
import hashlib
import re
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitops_bridge import sops
from gitops_bridge.render import yamlio

ENC = re.compile(
    r"ENC\[AES256_GCM,data:(?P<data>[^,]+),iv:(?P<iv>[^,]+),tag:(?P<tag>[^,]+),"
    r"type:(?P<type>[a-z]+)\]"
)
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 2, 8, 30, 15, tzinfo=UTC)
TOOL_TIMEOUT = 60
IDENTITY = sops.generate_identity()

Obj = dict[str, Any]


@pytest.fixture(scope="session")
def keys() -> tuple[list[str], list[str]]:
    identities = [sops.generate_identity() for _ in range(3)]
    return identities, [sops.public_key(i) for i in identities]


def secret(**string_data: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "web-env", "namespace": "shop", "labels": {"app": "web"}},
        "type": "Opaque",
        "stringData": dict(string_data),
    }


def write(tmp_path: Path, doc: Obj, name: str = "secret.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yamlio.dump(doc), encoding="utf-8")
    return path


def reload(path: Path) -> Obj:
    loaded = yamlio.load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def open_value(enc: str, key: bytes, aad: str) -> bytes:
    """AES-256-GCM as sops' aes/cipher.go: data||tag under the IV, ``aad`` authenticated."""
    match = ENC.fullmatch(enc)
    assert match is not None, enc
    data, iv, tag = (base64.b64decode(match[part]) for part in ("data", "iv", "tag"))
    return AESGCM(key).decrypt(iv, data + tag, aad.encode())


TRICKY = {
    "password": "s3cr3t",
    "unicode": "grüße, 東京, emoji 🎉",
    "dollar": "$HOME ${VAR} $$",
    "multiline": "line one\nline two\n",
    "empty": "",
    "yamlish": "yes",
    "spaces": "  padded  ",
}


# ---- a second implementation decrypts what this one writes -------------------------------


def test_sops_age_decrypts_to_exactly_the_values_set(
    tmp_path: Path, keys: tuple[list[str], list[str]], sops_age: Callable[[Path, str], Any]
) -> None:
    identities, recipients = keys
    doc = secret(**TRICKY)
    doc["data"] = {"token": base64.b64encode(b"\x00\xffbinary").decode()}
    doc["spec"] = {"replicas": 3, "enabled": True, "ratio": 0.25, "note": None}
    path = write(tmp_path, sops.encrypt(doc, recipients[:2]))
    for identity in identities[:2]:
        assert sops_age(path, identity) == doc


def test_sops_age_restores_types_inside_encrypted_paths(
    tmp_path: Path, keys: tuple[list[str], list[str]], sops_age: Callable[[Path, str], Any]
) -> None:
    identities, recipients = keys
    doc = {"kind": "Config", "data": {"count": 42, "on": False, "ratio": 1.5, "items": ["a", "b"]}}
    written = sops.encrypt(doc, recipients[:1])
    assert [ENC.fullmatch(v)["type"] for v in list(written["data"].values())[:3]] == [  # type: ignore[index]
        "int",
        "bool",
        "float",
    ]
    assert sops_age(write(tmp_path, written), identities[0]) == doc


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.dictionaries(
        st.from_regex(r"[A-Za-z_.-][-._a-zA-Z0-9]{0,20}", fullmatch=True),
        st.text(max_size=40),
        max_size=6,
    )
)
def test_sops_age_decrypts_random_string_data(
    tmp_path: Path,
    keys: tuple[list[str], list[str]],
    sops_age: Callable[[Path, str], Any],
    values: dict[str, str],
) -> None:
    identities, recipients = keys
    doc = secret(**values)
    assert sops_age(write(tmp_path, sops.encrypt(doc, recipients[:1])), identities[0]) == doc


def test_age_cli_opens_every_data_key_stanza(
    tmp_path: Path, keys: tuple[list[str], list[str]], age_cli: str
) -> None:
    identities, recipients = keys
    written = reload(write(tmp_path, sops.encrypt(secret(password="x"), recipients[:2])))
    data_key = sops.decrypt(written, identities[:1]).data_key
    stanzas = written["sops"]["age"]
    assert [s["recipient"] for s in stanzas] == recipients[:2]
    for i, stanza in enumerate(stanzas):
        assert stanza["enc"].startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
        assert stanza["enc"].endswith("-----END AGE ENCRYPTED FILE-----\n")
        for j, identity in enumerate(identities[:2]):
            key_file = tmp_path / f"key{j}.txt"
            key_file.write_text(identity + "\n", encoding="utf-8")
            result = subprocess.run(
                [age_cli, "--decrypt", "-i", str(key_file)],
                input=stanza["enc"].encode(),
                capture_output=True,
                timeout=TOOL_TIMEOUT,
                check=False,
            )
            if i == j:
                assert result.returncode == 0, result.stderr
                assert result.stdout == data_key
            else:
                assert result.returncode != 0


# ---- the format, checked by hand against getsops/sops --------------------------------------


def test_metadata_is_last_with_the_keys_sops_writes(keys: tuple[list[str], list[str]]) -> None:
    _, recipients = keys
    written = sops.encrypt(secret(password="x"), recipients[:1], now=T0)
    assert list(written) == ["apiVersion", "kind", "metadata", "type", "stringData", "sops"]
    metadata = written["sops"]
    assert list(metadata) == ["age", "encrypted_regex", "lastmodified", "mac", "version"]
    assert list(metadata["age"][0]) == ["enc", "recipient"]
    assert metadata["encrypted_regex"] == "^(data|stringData)$"
    assert metadata["lastmodified"] == "2026-03-01T12:00:00Z"
    assert re.fullmatch(r"3\.\d+\.\d+", metadata["version"])
    assert ENC.fullmatch(metadata["mac"])


def test_values_use_32_byte_ivs_and_the_path_as_additional_data(
    keys: tuple[list[str], list[str]],
) -> None:
    identities, recipients = keys
    doc = {"stringData": {"password": "hunter2"}, "data": {"list": ["a", "b"]}, "other": "x"}
    written = sops.encrypt(doc, recipients[:1])
    key = sops.decrypt(written, identities[:1]).data_key
    enc = written["stringData"]["password"]
    assert len(base64.b64decode(ENC.fullmatch(enc)["iv"])) == 32  # type: ignore[index]
    assert len(base64.b64decode(ENC.fullmatch(enc)["tag"])) == 16  # type: ignore[index]
    assert open_value(enc, key, "stringData:password:") == b"hunter2"
    # list items share the list's path: no index in the additional data
    assert [open_value(v, key, "data:list:") for v in written["data"]["list"]] == [b"a", b"b"]
    assert written["other"] == "x"


def test_mac_is_sha512_over_every_leaf_in_order(keys: tuple[list[str], list[str]]) -> None:
    identities, recipients = keys
    doc = {
        "apiVersion": "v1",
        "metadata": {"name": "n", "replicas": 3, "on": True, "off": False, "gone": None},
        "stringData": {"a": "1", "b": "2.5"},
        "ratio": 0.5,
    }
    written = sops.encrypt(doc, recipients[:1], now=T0)
    key = sops.decrypt(written, identities[:1]).data_key
    expected = hashlib.sha512(b"v1" + b"n" + b"3" + b"True" + b"False" + b"1" + b"2.5" + b"0.5")
    stored = open_value(written["sops"]["mac"], key, "2026-03-01T12:00:00Z")
    assert stored == expected.hexdigest().upper().encode()


def test_empty_strings_stay_empty_and_nulls_untouched(keys: tuple[list[str], list[str]]) -> None:
    identities, recipients = keys
    doc = {"stringData": {"empty": "", "null": None}}
    written = sops.encrypt(doc, recipients[:1])
    assert written["stringData"] == {"empty": "", "null": None}
    assert sops.decrypt(written, identities[:1]).document == doc


# ---- opening -----------------------------------------------------------------------------


def test_round_trip_restores_document_key_and_recipients(
    tmp_path: Path, keys: tuple[list[str], list[str]]
) -> None:
    identities, recipients = keys
    doc = secret(**TRICKY)
    doc["data"] = {"n": 7, "flag": True, "f": 2.0}
    written = sops.encrypt(doc, recipients[:2])
    opened = sops.decrypt(reload(write(tmp_path, written)), [identities[1]])
    assert opened.document == doc
    assert opened.recipients == tuple(recipients[:2])
    assert len(opened.data_key) == 32
    assert sops.is_encrypted(written) and not sops.is_encrypted(doc)
    assert sops.recipients_of(written) == tuple(recipients[:2])


@given(values=st.dictionaries(st.text(min_size=1, max_size=30), st.text(max_size=60), max_size=8))
@settings(max_examples=40, deadline=None)
def test_round_trip_of_random_string_data(values: dict[str, str]) -> None:
    identity = IDENTITY
    doc = secret(**values)
    written = sops.encrypt(doc, [sops.public_key(identity)])
    assert sops.decrypt(written, [identity]).document == doc
    for value, enc in zip(values.values(), written["stringData"].values(), strict=True):
        assert enc == "" if value == "" else ENC.fullmatch(enc)


def test_a_changed_ciphertext_byte_is_refused_without_showing_the_value(
    keys: tuple[list[str], list[str]],
) -> None:
    identities, recipients = keys
    written = sops.encrypt(secret(password="correct horse"), recipients[:1])
    match = ENC.fullmatch(written["stringData"]["password"])
    assert match is not None
    data = bytearray(base64.b64decode(match["data"]))
    data[0] ^= 0x01
    tampered = base64.b64encode(bytes(data)).decode()
    written["stringData"]["password"] = written["stringData"]["password"].replace(
        match["data"], tampered
    )
    with pytest.raises(sops.SopsError, match=r"stringData\.password: cannot decrypt") as caught:
        sops.decrypt(written, identities[:1])
    assert not isinstance(caught.value, sops.MacMismatch)
    assert "correct horse" not in str(caught.value)


def test_a_changed_plaintext_field_breaks_the_mac(keys: tuple[list[str], list[str]]) -> None:
    identities, recipients = keys
    written = sops.encrypt(secret(password="x"), recipients[:1])
    written["metadata"]["name"] = "someone-else"
    with pytest.raises(sops.MacMismatch, match=r"^MAC mismatch\. File has [0-9A-F]{128}, computed"):
        sops.decrypt(written, identities[:1])


def test_values_swapped_between_keys_are_refused(keys: tuple[list[str], list[str]]) -> None:
    identities, recipients = keys
    written = sops.encrypt(secret(user="admin", password="pw"), recipients[:1])
    data = written["stringData"]
    data["user"], data["password"] = data["password"], data["user"]
    with pytest.raises(sops.SopsError, match=r"stringData\.user: cannot decrypt"):
        sops.decrypt(written, identities[:1])


def test_a_value_that_is_not_enc_where_one_is_expected_is_refused(
    keys: tuple[list[str], list[str]],
) -> None:
    identities, recipients = keys
    written = sops.encrypt(secret(password="x"), recipients[:1])
    written["stringData"]["password"] = "plain text slipped in"
    with pytest.raises(sops.SopsError, match="not a well-formed ENC") as caught:
        sops.decrypt(written, identities[:1])
    assert "plain text slipped in" not in str(caught.value)
    written["stringData"]["password"] = 12
    with pytest.raises(sops.SopsError, match="expected an encrypted value, got a int"):
        sops.decrypt(written, identities[:1])


def test_an_identity_that_is_no_recipient_opens_nothing(keys: tuple[list[str], list[str]]) -> None:
    identities, recipients = keys
    written = sops.encrypt(secret(password="x"), recipients[:2])
    with pytest.raises(sops.NoKey, match=recipients[0]):
        sops.decrypt(written, [identities[2]])
    with pytest.raises(sops.NoKey):
        sops.decrypt(written, [])
    with pytest.raises(sops.NotEncrypted):
        sops.decrypt(secret(password="x"), identities)


# ---- keeping a file reviewable -------------------------------------------------------------


def test_same_key_with_keep_changes_only_the_changed_lines(
    keys: tuple[list[str], list[str]],
) -> None:
    identities, recipients = keys
    first = sops.encrypt(secret(a="1", b="2", c="3"), recipients[:2], now=T0)
    key = sops.decrypt(first, identities[:1]).data_key
    second = sops.encrypt(
        secret(a="1", b="two", c="3"), recipients[:2], data_key=key, keep=first, now=T1
    )
    before = yamlio.dump(first).splitlines()
    after = yamlio.dump(second).splitlines()
    diff = [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if not line.startswith(("+++", "---", "@@"))
    ]
    for sign in "-+":
        keys_changed = [line[1:].split(":")[0].strip() for line in diff if line[0] == sign]
        assert keys_changed == ["b", "lastmodified", "mac"]
    assert sops.decrypt(second, identities[1:2]).document == secret(a="1", b="two", c="3")


def test_new_recipients_get_new_stanzas_for_the_same_key(
    keys: tuple[list[str], list[str]],
) -> None:
    identities, recipients = keys
    first = sops.encrypt(secret(a="1"), recipients[:1], now=T0)
    key = sops.decrypt(first, identities[:1]).data_key
    second = sops.encrypt(secret(a="1"), recipients, data_key=key, keep=first, now=T1)
    assert second["stringData"] == first["stringData"]
    assert [s["recipient"] for s in second["sops"]["age"]] == recipients
    assert sops.decrypt(second, [identities[2]]).data_key == key


def test_without_a_data_key_every_save_rotates_it(keys: tuple[list[str], list[str]]) -> None:
    identities, recipients = keys
    doc = secret(a="1", b="2")
    first, second = (sops.encrypt(doc, recipients[:1], keep=None) for _ in range(2))
    opened = [sops.decrypt(d, identities[:1]) for d in (first, second)]
    assert opened[0].data_key != opened[1].data_key
    assert not set(first["stringData"].values()) & set(second["stringData"].values())


def test_keep_under_another_key_is_refused(keys: tuple[list[str], list[str]]) -> None:
    _, recipients = keys
    first = sops.encrypt(secret(a="1"), recipients[:1])
    with pytest.raises(sops.SopsError, match="keep must be encrypted with data_key"):
        sops.encrypt(secret(a="1"), recipients[:1], data_key=bytes(32), keep=first)


# ---- keys and recipients -------------------------------------------------------------------


def test_recipients_are_checked_and_secrets_never_echoed(keys: tuple[list[str], list[str]]) -> None:
    identities, recipients = keys
    assert sops.check_recipient(recipients[0]) == recipients[0]
    with pytest.raises(sops.SopsError, match="must be an age public key"):
        sops.check_recipient("age1nope")
    broken = recipients[0][:-1] + ("q" if recipients[0][-1] != "q" else "p")
    with pytest.raises(sops.SopsError, match="checksum"):
        sops.check_recipient(broken)
    with pytest.raises(sops.SopsError, match="identity \\(a secret key\\)") as caught:
        sops.check_recipient(identities[0])
    assert identities[0] not in str(caught.value)
    with pytest.raises(sops.SopsError, match="at least one age recipient"):
        sops.encrypt(secret(a="1"), [])
    with pytest.raises(sops.SopsError, match="already has sops metadata"):
        sops.encrypt(sops.encrypt(secret(a="1"), recipients[:1]), recipients[:1])


def test_identity_files_parse_like_age(keys: tuple[list[str], list[str]]) -> None:
    identities, _ = keys
    text = f"# created: today\n# public key: x\n{identities[0]}\n\n  {identities[1]}  \n"
    assert sops.parse_identities(text) == identities[:2]
    with pytest.raises(sops.SopsError, match="line 2: not a valid age identity") as caught:
        sops.parse_identities(f"{identities[0]}\nAGE-SECRET-KEY-1NOTREALLY\n")
    assert identities[0] not in str(caught.value)
    with pytest.raises(sops.SopsError, match="no age identity found"):
        sops.parse_identities("# only comments\n")
    assert sops.public_key(identities[0]).startswith("age1")
