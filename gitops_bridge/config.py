"""Settings: embedded defaults, overridden by a TOML file and ``GITOPS_BRIDGE_*`` variables.

Nested settings use ``__`` in variable names, e.g. ``GITOPS_BRIDGE_LIMITS__MAX_REPLICAS=10``.
A file given by ``GITOPS_BRIDGE_CONFIG`` (TOML) is read first; variables win over it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gitops_bridge import models, sops


class FrpSettings(BaseModel):
    """How exposed deployments reach frps (the token lives in a Secret, never in Git)."""

    model_config = ConfigDict(extra="forbid")

    server_addr: str = "frps.frp.svc.cluster.local"
    server_port: int = 7000
    namespace: str = "frp"
    token_secret: str = "frp-token"
    token_key: str = "token"
    # frps' auth token: written SOPS-encrypted into each new group's frp-token Secret, with a
    # fresh group key per group; empty: exposure needs that Secret made by hand
    token: SecretStr = SecretStr("")
    image: str = "registry:5000/platform/frpc:0.65.0"
    cpu: str = "10m"  # the sidecar's requests (limits: 2x), counted in every group's quota
    memory: str = "32Mi"

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, value: object) -> str:
        return models.check_quantity(value, kind="cpu")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: object) -> str:
        return models.check_quantity(value, kind="memory")


class SecretsSettings(BaseModel):
    """Secret values go to Git SOPS-encrypted (age), decrypted only by Flux and the bridge.

    ``age_recipients``: the public keys of the cluster's ``sops-age`` Secret in flux-system
    (and any break-glass keys); without one, secret values are refused. ``age_identity``:
    the bridge's own identity file, generated into ``data_dir`` when missing; its public key
    is always a recipient, so the bridge can keep values it is not sent again.
    """

    model_config = ConfigDict(extra="forbid")

    age_recipients: list[str] = Field(default_factory=list)
    age_identity: Path | None = None

    @field_validator("age_recipients")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(sops.check_recipient(item) for item in value))


AccessMode = Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"]


def _one_pod() -> list[AccessMode]:
    return ["ReadWriteOnce"]


class StorageClassSettings(BaseModel):
    """A StorageClass groups may put volumes on, as the cluster defines it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    access_modes: list[AccessMode] = Field(default_factory=_one_pod, min_length=1)
    expandable: bool = True  # the class's allowVolumeExpansion: volumes may grow
    description: str = ""


class StorageSettings(BaseModel):
    """Volumes (PersistentVolumeClaims) and the group storage quota they share with images."""

    model_config = ConfigDict(extra="forbid")

    classes: list[StorageClassSettings] = Field(
        default_factory=lambda: [StorageClassSettings(name="standard")], min_length=1
    )
    min_size: str = "1Gi"
    max_size: str = "500Gi"
    # a group over its storage quota (volumes + registry images) may not deploy new images
    # of its own registry path until it frees space
    refuse_images_over_quota: bool = True

    @field_validator("min_size", "max_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> str:
        return models.check_quantity(value, kind="memory")

    def storage_class(self, name: str) -> StorageClassSettings | None:
        return next((c for c in self.classes if c.name == name), None)


class ChartSettings(BaseModel):
    """Where HelmReleases get the generic chart from; always a source in the group's namespace.

    ``git``: the group's own GitRepository (``tenants/<group>/sync.yaml``), which checks out
    only the chart and the group's apps. ``oci``: an OCIRepository per group, pulling the
    chart that ``gitops-bridge chart push`` published to the platform registry. Both work
    with Flux's multi-tenancy lockdown (``--no-cross-namespace-refs``).
    """

    model_config = ConfigDict(extra="forbid")

    source: Literal["git", "oci"] = "git"
    path: str = "./charts/generic-app"
    oci_url: str = "oci://registry:5000/charts/generic-app"
    oci_tag: str = ""  # empty: the version of the chart this gitops-bridge ships
    oci_insecure: bool = False  # plain HTTP registry (OCIRepository spec.insecure)
    oci_secret: str = ""  # docker-registry Secret in each group namespace (spec.secretRef)


class FluxSettings(BaseModel):
    """How each group's Flux objects reach the repository and report back.

    Every group reconciles on its own: a GitRepository and a Kustomization in its namespace,
    impersonating the group's service account, so one group's failure stops no other.
    """

    model_config = ConfigDict(extra="forbid")

    git_url: str = "ssh://git@git.code-hub.com/platform/gitops.git"  # as Flux clones it
    git_secret: str = ""  # Secret with the read-only Git credentials, in each group namespace
    source_interval: str = "1m"
    interval: str = "10m"
    retry_interval: str = "1m"
    timeout: str = "5m"
    # Flux Provider (generic-hmac) + Alert per group; empty: no push events (polling only).
    events_url: str = "http://gitops-bridge.gitops-bridge.svc.cluster.local/api/v1/flux/events"
    events_secret: str = "gitops-bridge-events"  # in each group namespace, key `token`

    @field_validator("git_url")
    @classmethod
    def _flux_url(cls, value: str) -> str:
        # the GitRepository CRD: spec.url pattern ^(http|https|ssh)://.*$
        if not value.startswith(("http://", "https://", "ssh://")):
            raise ValueError(
                f"must be an http, https or ssh URL (what Flux can clone), got {value!r}"
            )
        return value


class ReviewSettings(BaseModel):
    """Direct commits to main, or one review branch + change request per change."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["direct", "pull-request"] = "direct"
    approvers: Literal["members", "admins"] = "members"  # who may approve a change
    self_approval: bool = False  # may the author approve their own change?
    forge: Literal["none", "github", "gitea"] = "none"  # none = built-in review
    forge_url: str = ""
    forge_repo: str = ""  # owner/name
    forge_token: SecretStr = SecretStr("")
    webhook_secret: SecretStr = SecretStr("")
    poll_interval: float = 60.0


class KubernetesSettings(BaseModel):
    """How to reach the cluster Flux runs in; without one the UI says "not connected"."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["none", "kubeconfig", "in-cluster", "auto"] = "auto"
    kubeconfig: str | None = None  # auto: this, else $KUBECONFIG, else in-cluster, else none
    context: str | None = None
    timeout: float = 10.0
    poll_interval: float = 10.0
    page_size: int = Field(default=500, ge=1)  # objects per LIST page: bounds one page's bytes
    flux_namespace: str = "flux-system"
    kustomization: str = "tenants"
    gitrepository: str = "flux-system"
    reconcile_on_commit: bool = True  # annotate the GitRepository + Kustomization after a push
    receiver_url: str = ""  # or call this Flux Receiver (generic-hmac) instead
    receiver_token: SecretStr = SecretStr("")
    events_token: SecretStr = SecretStr("")  # the Provider's HMAC key for /api/v1/flux/events
    lease_namespace: str = ""  # leader election; empty: every replica polls
    lease_name: str = "gitops-bridge-poller"
    lease_seconds: float = 15.0
    identity: str = ""  # this replica's name (default: host name + pid)
    advertise_url: str = ""  # how other replicas reach this one (leader's readings)
    # the cluster is the demo's simulation (scripts/run --demo): every page says so, so no
    # one takes its pods, logs and usage for a real cluster's
    simulated: bool = False


class RegistrySettings(BaseModel):
    """The platform registry users push images to; empty ``url``: no image picker, no storage."""

    model_config = ConfigDict(extra="forbid")

    url: str = ""  # how the bridge reaches the registry's HTTP API, e.g. http://registry:5000
    host: str = "registry:5000"  # how images are named in manifests: <host>/<repository>:<tag>
    username: str = ""
    password: SecretStr = SecretStr("")
    group_prefix: str = "{group}/"  # the repositories of group g start with this
    timeout: float = Field(default=5.0, gt=0)
    cache_seconds: float = Field(default=30.0, ge=0)  # how long listings and sizes are reused

    @field_validator("group_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if "{group}" not in value:
            raise ValueError(f"must contain {{group}}, got {value!r}")
        return value

    def prefix(self, group: str) -> str:
        return self.group_prefix.replace("{group}", group)


class ServerSettings(BaseModel):
    """How ``serve`` runs waitress (see ``gitops_bridge.serving``): separate worker lanes for
    health checks, log streams and everything else; bounds on connections and streams."""

    model_config = ConfigDict(extra="forbid")

    threads: int = Field(default=8, ge=1, le=256)  # workers for the UI and the API
    health_threads: int = Field(default=2, ge=1, le=16)  # /healthz and /metrics only
    history_threads: int = Field(default=2, ge=1, le=64)  # deployment histories (with diffs)
    connection_limit: int = Field(default=1000, ge=10)  # open sockets, idle ones included
    channel_timeout: int = Field(default=30, ge=1)  # an idle connection is closed after this
    max_streams: int = Field(default=100, ge=1, le=2000)  # followed logs open at once
    max_streams_per_user: int = Field(default=4, ge=1)
    stream_heartbeat: float = Field(default=5.0, gt=0, le=60)  # seconds between SSE comments
    stream_max_seconds: float = Field(default=3600.0, gt=0)  # a stream ends after this


class UsageSettings(BaseModel):
    """Usage over time on a deployment's page (``gitops_bridge.usage``): one sample per
    ``step`` seconds (the peak of the readings in it), ``window`` seconds of them, for at
    most ``max_series`` deployments: a series is 14 bytes a step and ~500 bytes besides,
    ~2.1 KiB at the defaults (``scripts/bench --only usage``). A step shorter than
    ``kubernetes.poll_interval`` leaves steps without a reading: gaps in the graph.

    With ``prometheus_url`` (a Prometheus that scrapes the kubelets' cAdvisor metrics) the
    points are read from it instead (``gitops_bridge.usagehistory``), so a graph survives a
    restart of the bridge; ``prometheus_timeout`` bounds what one page waits for it."""

    model_config = ConfigDict(extra="forbid")

    step: int = Field(default=30, ge=1, le=3600)  # seconds
    window: int = Field(default=3600, ge=3600, le=86_400)  # seconds: at least the last hour
    max_series: int = Field(default=20_000, ge=1, le=200_000)
    prometheus_url: str = ""  # e.g. http://prometheus-k8s.monitoring.svc:9090; empty: off
    prometheus_timeout: float = Field(default=3.0, gt=0, le=60)  # seconds, all queries of a page
    # sent as "Authorization: Bearer ..." (a Prometheus behind kube-rbac-proxy or a gateway)
    prometheus_token: SecretStr = SecretStr("")

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http or https URL (or empty: off), got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _steps(self) -> UsageSettings:
        if self.window % self.step:
            raise ValueError(f"window: must be a multiple of step ({self.step}), got {self.window}")
        if self.window // self.step > 2880:
            raise ValueError(
                f"window / step: at most 2880 steps a series, got {self.window // self.step}"
            )
        return self


class ApiToken(BaseModel):
    """A machine identity for the JSON API: `Authorization: Bearer <token>`.

    Only the token's SHA-256 is configured (`gitops-bridge token new NAME` makes one).
    """

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    groups: list[str] = Field(default_factory=list)  # acts as a member of these groups
    admin: bool = False
    email: str = ""

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        return [models.fold_name(group) for group in value]


class DefaultQuota(BaseModel):
    """The quota the Groups page offers for a new group (the specification's example); an
    admin may change it in the form before creating the group."""

    model_config = ConfigDict(extra="forbid")

    cpu: str = "10"
    memory: str = "20Gi"
    storage: str = "50Gi"
    deployments: int = Field(default=10, ge=0, le=10_000)

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, value: object) -> str:
        return models.check_quantity(value, kind="cpu")

    @field_validator("memory", "storage", mode="before")
    @classmethod
    def _memory(cls, value: object) -> str:
        return models.check_quantity(value, kind="memory")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GITOPS_BRIDGE_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".gitops-bridge")
    repo_url: str | None = None
    branch: str = "main"
    cluster: str = "dev"
    domain: str = "code-hub.com"
    identity: Literal["dev", "proxy"] = "dev"
    trusted_proxies: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # the other replicas: may take the leader's reading (with the peer token)
    peers: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    # besides loopback and the peers: may read /metrics and /readyz (e.g. Prometheus)
    ops_networks: list[str] = Field(default_factory=list)
    admins: list[str] = Field(default_factory=lambda: ["admin"])
    api_tokens: dict[str, ApiToken] = Field(default_factory=dict)  # name -> token
    admin_group: str = "platform-admins"
    # the quota the Groups page offers for a new group (the specification's example)
    default_quota: DefaultQuota = Field(default_factory=DefaultQuota)
    workspaces_url: str = ""  # code-hub's Workspaces tab, linked in the nav; empty: no link
    secret_key: str | None = None
    committer_name: str = "gitops-bridge"
    committer_email: str = "gitops-bridge@code-hub.com"
    push_deadline: float = Field(default=30.0, gt=0)  # seconds a write may spend losing races
    push_attempts: int | None = Field(default=None, ge=1)  # an extra cap on pushes per write
    fetch_interval: float = 2.0
    demo_group: bool = True
    limits: models.Limits = Field(default_factory=models.Limits)
    frp: FrpSettings = Field(default_factory=FrpSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    chart: ChartSettings = Field(default_factory=ChartSettings)
    flux: FluxSettings = Field(default_factory=FluxSettings)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    helm_interval: str = "10m"
    remediation_retries: int = 3
    helm_bin: str | None = None
    kubectl_bin: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("GITOPS_BRIDGE_CONFIG")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)

    @field_validator("trusted_proxies", "peers", "ops_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value

    @field_validator("admins")
    @classmethod
    def _admins(cls, value: list[str]) -> list[str]:
        return [models.fold_name(name) for name in value]

    @field_validator("admin_group")
    @classmethod
    def _admin_group(cls, value: str) -> str:
        return models.fold_name(value)

    @field_validator("workspaces_url")
    @classmethod
    def _workspaces_url(cls, value: str) -> str:
        # a link in every page's nav: a web address or a path on this site, nothing else
        if value and not value.startswith(("https://", "http://", "/")):
            raise ValueError(f"must be an http(s) URL or a path starting with /, got {value!r}")
        return value

    @field_validator("api_tokens")
    @classmethod
    def _token_names(cls, value: dict[str, ApiToken]) -> dict[str, ApiToken]:
        folded = {models.fold_name(name): token for name, token in value.items()}
        if len(folded) != len(value):
            raise ValueError("token names must differ in more than letter case")
        return folded

    @property
    def remote_url(self) -> str:
        return self.repo_url or (self.data_dir.resolve() / "remote.git").as_uri()

    @property
    def embedded_remote(self) -> Path | None:
        return None if self.repo_url else self.data_dir.resolve() / "remote.git"

    @property
    def clone_dir(self) -> Path:
        return self.data_dir.resolve() / "clone.git"


def load(**overrides: Any) -> Settings:
    """Settings from explicit overrides, then the environment, then GITOPS_BRIDGE_CONFIG (TOML)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)
