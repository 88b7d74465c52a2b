"""The Secrets the bridge writes to Git, SOPS-encrypted (``sops``): pure builders.

- ``apps/<app>-<id>.secret.yaml``: Secret ``<app>-<id>-env`` with a deployment's secret
  values (the chart reads them with ``secretKeyRef``), applied by the group's Kustomization,
  which decrypts it with the group's own age identity;
- ``tenants/<group>/sops-age.yaml``: Secret ``sops-age`` holding that identity, applied by
  the platform Kustomization, which decrypts it with the cluster's ``flux-system/sops-age``;
- ``tenants/<group>/frp-token.yaml``: the frpc credentials of the group (frps' token and a
  group key of its own), applied the same way.

A group's identity opens its own Secrets only: a member who reads ``sops-age`` in the
group's namespace learns nothing about another group's.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from gitops_bridge import sops
from gitops_bridge.models import OWN_SECRET_SUFFIX, Deployment
from gitops_bridge.render import layout
from gitops_bridge.render.manifest import Manifest
from gitops_bridge.render.yamlio import dump

FRP_GROUP_KEY = "group-key"


def secrets_path(group: str, name: str) -> str:
    return f"{layout.apps_dir(group)}/{name}{layout.SECRET_SUFFIX}"


def secret_name(name: str) -> str:
    return name + OWN_SECRET_SUFFIX


def _secret(name: str, namespace: str, labels: dict[str, str], data: Mapping[str, str]) -> Any:
    document = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "Opaque",
    }
    return with_values(document, data)


def with_values(document: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, Any]:
    """The Secret holding exactly ``values`` (in ``data``, base64; no ``stringData``)."""
    found = {key: value for key, value in document.items() if key != "stringData"}
    found["data"] = {
        key: base64.b64encode(value.encode()).decode() for key, value in values.items()
    }
    return found


def values_of(opened: sops.Opened) -> dict[str, str]:
    """The values of a decrypted Secret (``data`` base64, ``stringData`` as is)."""
    document = opened.document
    found: dict[str, str] = {}
    for key, value in (document.get("data") or {}).items():
        found[str(key)] = base64.b64decode(str(value)).decode()
    for key, value in (document.get("stringData") or {}).items():
        found[str(key)] = str(value)
    return found


def encrypted(
    path: str,
    document: Any,
    recipients: Sequence[str],
    *,
    previous: sops.Opened | None,
    kept: Mapping[str, Any] | None,
    now: datetime,
) -> Manifest:
    """The file, encrypted; with the previous version's data key and its unchanged values'
    ciphertext when it goes to the same recipients, so the diff shows what changed."""
    same = previous is not None and set(previous.recipients) == set(recipients)
    body = sops.encrypt(
        document,
        recipients,
        data_key=previous.data_key if same and previous is not None else None,
        keep=kept if same else None,
        now=now,
    )
    return Manifest(path, dump(body))


def env_secret(
    deployment: Deployment,
    values: Mapping[str, str],
    recipients: Sequence[str],
    *,
    previous: sops.Opened | None = None,
    kept: Mapping[str, Any] | None = None,
    now: datetime,
) -> Manifest:
    labels = {
        layout.LABEL_MANAGED_BY: layout.MANAGED_BY,
        layout.LABEL_GROUP: deployment.group,
        layout.LABEL_APP: deployment.app,
        layout.LABEL_ID: deployment.id,
    }
    document = _secret(secret_name(deployment.name), deployment.namespace, labels, values)
    path = secrets_path(deployment.group, deployment.name)
    return encrypted(path, document, recipients, previous=previous, kept=kept, now=now)


def _group_labels(group: str) -> dict[str, str]:
    return {layout.LABEL_MANAGED_BY: layout.MANAGED_BY, layout.LABEL_GROUP: group}


def group_key(
    group: str, namespace: str, identity: str, recipients: Sequence[str], *, now: datetime
) -> Manifest:
    """The group's age identity as the Secret its Kustomization decrypts with."""
    document = _secret(
        layout.GROUP_AGE_SECRET, namespace, _group_labels(group), {layout.AGE_KEY: identity + "\n"}
    )
    document["metadata"]["annotations"] = {layout.ANNOTATION_RECIPIENT: sops.public_key(identity)}
    path = f"{layout.group_dir(group)}/{layout.GROUP_KEY_FILE}"
    return encrypted(path, document, recipients, previous=None, kept=None, now=now)


def frp_token(
    group: str,
    namespace: str,
    *,
    secret: str,
    token_key: str,
    token: str,
    group_key_value: str,
    recipients: Sequence[str],
    now: datetime,
) -> Manifest:
    """The frp Secret every exposed deployment's sidecar reads (frps' token, the group key)."""
    data = {token_key: token, FRP_GROUP_KEY: group_key_value}
    document = _secret(secret, namespace, _group_labels(group), data)
    path = f"{layout.group_dir(group)}/{layout.FRP_FILE}"
    return encrypted(path, document, recipients, previous=None, kept=None, now=now)
