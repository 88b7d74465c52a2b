"""Secret values on their way to Git: the bridge's age identity, who may decrypt what, and the
planning of the encrypted files (``render.secrets``) that a write carries.

Values are write-only. They come in with a request, go out encrypted, and are read back
(with the bridge's own identity, always a recipient) only to keep the values a request did
not send again, and to re-encrypt for new recipients. No model the bridge keeps or returns
holds one: entries read back say ``secret: true`` and when which key was set, by whom.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets as random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from gitops_bridge import sops
from gitops_bridge.cache import Bounded
from gitops_bridge.config import Settings
from gitops_bridge.errors import Conflict, FieldProblem, InvalidRequest
from gitops_bridge.gitrepo import Snapshot
from gitops_bridge.models import Deployment, EnvVar, Group, SecretChange
from gitops_bridge.render import layout, yamlio
from gitops_bridge.render import secrets as files
from gitops_bridge.render.manifest import Manifest

IDENTITY_FILE = "age-identity.txt"
HOW_TO_CONFIGURE = (
    "secret values need an age recipient for the cluster: set secrets.age_recipients "
    "(GITOPS_BRIDGE_SECRETS__AGE_RECIPIENTS='[\"age1...\"]') to the public key of the "
    "sops-age Secret in flux-system (see the README, Secrets)"
)

log = logging.getLogger(__name__)


def load_identity(path: Path) -> str:
    """The bridge's age identity from its file, made (mode 0600) when missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        identity = sops.generate_identity()
        text = f"# gitops-bridge's age identity\n# public key: {sops.public_key(identity)}\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text + identity + "\n")
        log.info("made the bridge's age identity %s (%s)", path, sops.public_key(identity))
    found = sops.parse_identities(path.read_text(encoding="utf-8"))
    if not found:
        raise ValueError(f"{path}: no age identity (AGE-SECRET-KEY-1...) in it")
    return found[0]


@dataclass
class EnvPlan:
    """What a deployment's secret values make of a write."""

    deployment: Deployment  # values stripped, ``secrets`` updated
    writes: list[Manifest] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # keys set or removed


class SecretStore:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        path = settings.secrets.age_identity or settings.data_dir / IDENTITY_FILE
        self.identity = load_identity(Path(path))
        self.public = sops.public_key(self.identity)
        self.configured = tuple(settings.secrets.age_recipients)
        # group -> (blob of its key file, its recipient): one decryption per key file seen
        self._group_keys: Bounded[str, tuple[str, str]] = Bounded(max_items=4096)

    @property
    def enabled(self) -> bool:
        """A cluster recipient is configured: Flux can decrypt what the bridge writes."""
        return bool(self.configured)

    def platform_recipients(self) -> list[str]:
        return list(dict.fromkeys([*self.configured, self.public]))

    def digest(self, value: str) -> str:
        """A keyed digest of a value (idempotency keys compare requests by it): without the
        bridge's identity it tells nothing about the value."""
        key = hashlib.sha256(b"gitops-bridge/request\0" + self.identity.encode()).digest()
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    def open(self, data: bytes, path: str) -> sops.Opened:
        """A file the bridge wrote, decrypted (Conflict when it cannot be: a hand edit, a
        bad MAC, or encrypted without the bridge's key)."""
        try:
            return sops.decrypt(yamlio.load(data), [self.identity])
        except sops.NoKey:
            raise Conflict(
                f"{path} is not encrypted for this gitops-bridge ({self.public}); an admin "
                "re-encrypts it for it (gitops-bridge secrets rotate with a key that opens it)"
            ) from None
        except (sops.SopsError, ValueError, TypeError, AttributeError) as exc:
            raise Conflict(f"{path} cannot be decrypted: {exc}") from None

    def group_recipient(self, snapshot: Snapshot, group: str) -> str:
        """The public key of the group's own identity (its ``sops-age.yaml``)."""
        path = f"{layout.group_dir(group)}/{layout.GROUP_KEY_FILE}"
        blob = snapshot.blob(path)
        if blob is None:
            raise Conflict(
                f"group {group} has no decryption key yet ({path}): a platform admin runs "
                "`gitops-bridge upgrade-repo` once secrets are configured"
            )
        cached = self._group_keys.get(group)
        if cached is not None and cached[0] == blob:
            return cached[1]
        data = snapshot.read(path)
        assert data is not None
        opened = self.open(data, path)
        identity = files.values_of(opened).get(layout.AGE_KEY, "").strip()
        try:
            recipient = sops.public_key(identity)
        except (sops.SopsError, ValueError) as exc:
            raise Conflict(f"{path} holds no age identity under {layout.AGE_KEY}") from exc
        self._group_keys.put(group, (blob, recipient))
        return recipient

    def app_recipients(self, snapshot: Snapshot, group: str) -> list[str]:
        return list(
            dict.fromkeys([*self.configured, self.public, self.group_recipient(snapshot, group)])
        )

    def require(self, entries: Sequence[tuple[int, EnvVar]]) -> None:
        if entries and not self.enabled:
            raise InvalidRequest.of(
                [FieldProblem(f"env[{i}].secret", HOW_TO_CONFIGURE) for i, _ in entries]
            )

    # ---- a deployment's values ----------------------------------------------------------

    def plan_env(
        self,
        snapshot: Snapshot,
        before: Deployment | None,
        after: Deployment,
        *,
        user: str,
        now: datetime,
    ) -> EnvPlan:
        """The deployment's Secret for ``after``: values sent are set, secret entries
        without one keep theirs, keys no longer listed go; unchanged values keep their
        ciphertext. ``after`` comes back without values."""
        entries = [(i, var) for i, var in enumerate(after.spec.env) if var.secret]
        path = files.secrets_path(after.group, after.name)
        current = snapshot.read(path)
        stripped = _stripped(after)
        if not entries:
            plan = EnvPlan(deployment=stripped.model_copy(update={"secrets": {}}))
            if current is not None:
                plan.deletes.append(path)
                plan.changed = sorted(before.secrets) if before else []
            return plan
        self.require(entries)
        opened = self.open(current, path) if current is not None else None
        stored = files.values_of(opened) if opened is not None else {}
        values: dict[str, str] = {}
        missing = []
        for i, var in entries:
            if var.value is not None:
                values[var.name] = var.value
            elif var.name in stored:
                values[var.name] = stored[var.name]
            else:
                missing.append(
                    FieldProblem(
                        f"env[{i}].value", f"is required: {var.name} has no stored value yet"
                    )
                )
        if missing:
            raise InvalidRequest.of(missing)
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        old = before.secrets if before is not None else {}
        changes: dict[str, SecretChange] = {}
        changed = sorted(set(stored) - set(values))
        for key, value in values.items():
            if key in stored and stored[key] == value:
                if key in old:  # unchanged: who set it stays
                    changes[key] = old[key]
            else:
                changes[key] = SecretChange(by=user, at=stamp)
                changed.append(key)
        plan = EnvPlan(deployment=stripped.model_copy(update={"secrets": changes}))
        plan.changed = sorted(changed)
        recipients = self.app_recipients(snapshot, after.group)
        if (
            opened is not None
            and values == stored
            and set(opened.recipients) == set(recipients)
            and opened.document.get("metadata", {}).get("name") == files.secret_name(after.name)
        ):
            return plan  # nothing to write: the file stays byte for byte
        plan.writes.append(
            files.env_secret(
                after,
                values,
                recipients,
                previous=opened,
                kept=yamlio.load(current) if current is not None else None,
                now=now,
            )
        )
        return plan

    def reencrypted(self, data: bytes, path: str, recipients: Sequence[str]) -> bytes:
        """The file for ``recipients`` (as is when it is for them already)."""
        document = yamlio.load(data)
        if set(sops.recipients_of(document)) == set(recipients):
            return data
        opened = self.open(data, path)
        return files.encrypted(
            path, opened.document, recipients, previous=None, kept=None, now=_now()
        ).data

    # ---- a group's files ----------------------------------------------------------------

    def group_files(self, snapshot: Snapshot, group: Group) -> list[Manifest]:
        """The group's key file and frp credentials: as they are in Git, else new. None
        without a configured recipient (Flux could not decrypt them)."""
        if not self.enabled:
            return []
        base = layout.group_dir(group.name)
        found: list[Manifest] = []
        key_path = f"{base}/{layout.GROUP_KEY_FILE}"
        kept = snapshot.read(key_path)
        if kept is not None:
            found.append(Manifest(key_path, kept.decode()))
        else:
            identity = sops.generate_identity()
            found.append(
                files.group_key(
                    group.name,
                    group.namespace,
                    identity,
                    self.platform_recipients(),
                    now=_now(),
                )
            )
        frp = self.settings.frp
        frp_path = f"{base}/{layout.FRP_FILE}"
        kept = snapshot.read(frp_path)
        if kept is not None:
            found.append(Manifest(frp_path, kept.decode()))
        elif frp.token.get_secret_value():
            found.append(
                files.frp_token(
                    group.name,
                    group.namespace,
                    secret=frp.token_secret,
                    token_key=frp.token_key,
                    token=frp.token.get_secret_value(),
                    group_key_value=random.token_urlsafe(24),
                    recipients=self.platform_recipients(),
                    now=_now(),
                )
            )
        return found

    # ---- rotation -----------------------------------------------------------------------

    def rotation(self, snapshot: Snapshot, groups: Sequence[str], *, force: bool) -> list[Manifest]:
        """Every encrypted file the bridge keeps, re-encrypted for today's recipients (with a
        new data key) where its recipients differ, or everywhere with ``force``. The frp
        credentials take today's frps token, their group key kept."""
        if not self.enabled:
            raise InvalidRequest.field("secrets.age_recipients", HOW_TO_CONFIGURE)
        out: list[Manifest] = []
        platform = self.platform_recipients()
        for group in groups:
            base = layout.group_dir(group)
            for name in (layout.GROUP_KEY_FILE, layout.FRP_FILE):
                path = f"{base}/{name}"
                data = snapshot.read(path)
                if data is not None:
                    rotated = self._rotated(data, path, platform, force=force)
                    if rotated is not None:
                        out.append(rotated)
            if snapshot.blob(f"{base}/{layout.GROUP_KEY_FILE}") is None:
                continue
            recipients = self.app_recipients(snapshot, group)
            for path in sorted(snapshot.folder(group)):
                if path.endswith(layout.SECRET_SUFFIX):
                    data = snapshot.read(path)
                    assert data is not None
                    rotated = self._rotated(data, path, recipients, force=force)
                    if rotated is not None:
                        out.append(rotated)
        return out

    def _rotated(
        self, data: bytes, path: str, recipients: Sequence[str], *, force: bool
    ) -> Manifest | None:
        document = yamlio.load(data)
        token = self.settings.frp.token.get_secret_value()
        frp = path.endswith("/" + layout.FRP_FILE)
        same = set(sops.recipients_of(document)) == set(recipients)
        opened = self.open(data, path)
        if frp and token:
            values = {**files.values_of(opened), self.settings.frp.token_key: token}
            content = files.with_values(opened.document, values)
        else:
            content = opened.document
        if same and not force and content == opened.document:
            return None
        return files.encrypted(path, content, recipients, previous=None, kept=None, now=_now())


def _stripped(deployment: Deployment) -> Deployment:
    """The deployment without any secret value in it."""
    if not any(var.secret and var.value is not None for var in deployment.spec.env):
        return deployment
    env = [EnvVar(name=var.name, secret=True) if var.secret else var for var in deployment.spec.env]
    return deployment.model_copy(update={"spec": deployment.spec.model_copy(update={"env": env})})


def _now() -> datetime:
    return datetime.now(UTC)
