"""The data gitops-bridge works with, and every validation rule for user input.

Rules are checked here once; later stages (quota, render, git) assume valid models.
Every rejection names the field and the rule (``replicas: must be 0..20, got 50``).

Quantities are kept in the form the API server stores without warnings: memory and storage
in whole bytes, cpu in whole millicores. A *request* (``parse_deployment``, ``parse_group``,
settings) that is finer is refused with the nearest valid values; a model read back from the
repository (no request context; older versions wrote ``0.9Gi`` as ``966367641600000000n``) is
rounded up the way Kubernetes reads it, so the state still loads and the next write of that
deployment or group stores the canonical value.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from gitops_bridge import quantity
from gitops_bridge.errors import FieldProblem, InvalidRequest

DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
ID_PATTERN = re.compile(r"^[a-z0-9]{6}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Kubernetes' YAML/JSON decoders refuse or fold these (kustomize: "control characters are
# not allowed"); tab, newline and carriage return are fine.
_CONTROL = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufeff\ufffe\uffff]")
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,252}$")  # before folding
ID_LENGTH = 6
RELEASE_NAME_MAX = 53  # Helm release names
NAMESPACE_PREFIX = "group-"
GROUP_NAME_MAX = 63 - len(NAMESPACE_PREFIX)
APP_NAME_MAX = RELEASE_NAME_MAX - 1 - ID_LENGTH


def fold_name(name: str) -> str:
    """The one spelling of a user or group name: `Rita` and `rita` are one person. Every
    edge where a name comes in (identity headers, tokens, settings, group files) folds it
    with this, so everything behind it compares names as they are."""
    return name.strip().casefold()


# OCI distribution reference grammar (distribution/reference), anchored.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_REFERENCE = re.compile(
    rf"^(?P<name>(?:(?P<domain>{_DOMAIN})/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
IMAGE_RULE = (
    "must be an image reference registry[:port]/path[:tag][@sha256:digest] "
    "(lowercase path, tag of letters, digits, '_', '.', '-')"
)


def check_dns_label(value: str, *, max_length: int) -> str:
    if not DNS_LABEL.fullmatch(value) or len(value) > max_length:
        raise ValueError(
            f"must be a DNS label (a-z, 0-9, '-'; start with a letter, end with a letter "
            f"or digit; max {max_length}), got {value!r}"
        )
    return value


def check_quantity(value: object, *, kind: Literal["cpu", "memory"], strict: bool = True) -> str:
    """A positive quantity, canonical (``format_cpu`` / ``format_memory``).

    ``strict``: refuse cpu finer than 1m and memory in fractional bytes (see quantity.py for
    why), naming the nearest valid values; otherwise round them up like Kubernetes does.
    """
    try:
        q = quantity.parse(value)  # type: ignore[arg-type]
    except quantity.QuantityError as exc:
        raise ValueError(str(exc)) from None
    if q.value <= 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    if kind == "cpu":
        problem = quantity.millicores_problem(q, value)
    else:
        problem = quantity.whole_bytes_problem(q, value)
    if problem is not None and strict:
        raise ValueError(problem)
    return q.format_cpu() if kind == "cpu" else q.format_memory()


def _request(info: ValidationInfo) -> bool:
    """Validating a request (strict), not a model read back from the repository (lenient)."""
    return isinstance(info.context, Mapping) and bool(info.context.get("request"))


class Limits(BaseModel):
    """Installation policy that bounds what users may request (quantities: strict, canonical)."""

    model_config = ConfigDict(extra="forbid")

    max_replicas: int = 20
    cpu_min: str = "10m"
    cpu_max: str = "4"
    memory_min: str = "16Mi"
    memory_max: str = "8Gi"
    allowed_registries: list[str] = Field(default_factory=list)
    max_env: int = 100
    max_env_value_bytes: int = 32 * 1024

    @field_validator("cpu_min", "cpu_max", mode="before")
    @classmethod
    def _cpu(cls, value: object) -> str:
        return check_quantity(value, kind="cpu")

    @field_validator("memory_min", "memory_max", mode="before")
    @classmethod
    def _memory(cls, value: object) -> str:
        return check_quantity(value, kind="memory")


DEFAULT_LIMITS = Limits()


def _limits(info: ValidationInfo) -> Limits:
    context = info.context if isinstance(info.context, Mapping) else {}
    limits = context.get("limits", DEFAULT_LIMITS)
    assert isinstance(limits, Limits)
    return limits


def _in_range(value: str, *, low: str, high: str, kind: str) -> str:
    q, lo, hi = quantity.parse(value), quantity.parse(low), quantity.parse(high)
    if not lo <= q <= hi:
        raise ValueError(f"must be {low}..{high}, got {value}")
    return value


class QuotaSpec(BaseModel):
    """A group's quota: requests it may use, registry storage, number of deployments."""

    model_config = ConfigDict(extra="forbid")

    cpu: str
    memory: str
    storage: str = "10Gi"
    deployments: Annotated[StrictInt, Field(ge=0, le=10_000)]

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, value: object, info: ValidationInfo) -> str:
        return check_quantity(value, kind="cpu", strict=_request(info))

    @field_validator("memory", "storage", mode="before")
    @classmethod
    def _memory(cls, value: object, info: ValidationInfo) -> str:
        return check_quantity(value, kind="memory", strict=_request(info))


class Group(BaseModel):
    """A team: a namespace ``group-<name>`` with members and a quota."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    members: list[StrictStr] = Field(default_factory=list, max_length=1000)
    admins: list[StrictStr] = Field(default_factory=list, max_length=1000)
    quota: QuotaSpec
    review: Literal["direct", "pull-request"] | None = None  # None: the installation's mode

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns_label(value, max_length=GROUP_NAME_MAX)

    @field_validator("members", "admins")
    @classmethod
    def _members(cls, value: list[str]) -> list[str]:
        seen: list[str] = []
        for i, member in enumerate(value):
            if not USER_NAME.fullmatch(member):
                raise ValueError(
                    f"[{i}]: must be a user name (letters, digits, '.', '_', '@', '+', '-'; "
                    f"max 253), got {member!r}"
                )
            if fold_name(member) not in seen:
                seen.append(fold_name(member))
        return seen

    @property
    def namespace(self) -> str:
        return NAMESPACE_PREFIX + self.name


SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # a Secret's data key (IsConfigMapKey)
# Secrets a deployment's env may not read: the group's decryption key and the frp
# credentials are the platform's (render.secrets), the deployment's own is ``secret: true``
PLATFORM_SECRETS = frozenset({"sops-age", "frp-token"})
OWN_SECRET_SUFFIX = "-env"  # the Secret the bridge writes for a deployment's secret values


class SecretRef(BaseModel):
    """A key of a Secret managed elsewhere (External Secrets, an operator) in the group's
    namespace: rendered as ``valueFrom.secretKeyRef``."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    key: StrictStr

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SECRET_NAME.fullmatch(value) or len(value) > 253:
            raise ValueError(
                f"must be a Secret name (DNS subdomain: a-z, 0-9, '-', '.'; max 253), got {value!r}"
            )
        if value in PLATFORM_SECRETS:
            raise ValueError(f"{value!r} is the platform's own Secret; apps cannot read it")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not SECRET_KEY.fullmatch(value) or len(value) > 253:
            raise ValueError(
                f"must be a Secret key (letters, digits, '-', '_', '.'; max 253), got {value!r}"
            )
        return value


class EnvVar(BaseModel):
    """One environment variable: a plain ``value``; a secret value (``secret: true``),
    stored SOPS-encrypted beside the deployment and never shown again; or a ``secretRef``.

    A secret entry without ``value`` keeps the value stored (requests) or stands for it
    (everything read back from the repository: values never leave the encrypted file).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: StrictStr
    value: StrictStr | None = None
    secret: StrictBool = False
    secret_ref: SecretRef | None = Field(default=None, alias="secretRef")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not ENV_NAME.fullmatch(value) or len(value) > 256:
            raise ValueError(
                f"must be a C identifier (letters, digits, '_'; not starting with a digit), "
                f"got {value!r}"
            )
        return value

    @field_validator("value")
    @classmethod
    def _value(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if "\x00" in value:
            raise ValueError("must not contain a NUL character")
        bad = _CONTROL.search(value)
        if bad:
            raise ValueError(
                f"must not contain control characters other than tab, newline and carriage "
                f"return, got U+{ord(bad.group()):04X}"
            )
        size = len(value.encode())
        if size > _limits(info).max_env_value_bytes:
            raise ValueError(f"must be at most {_limits(info).max_env_value_bytes} bytes")
        return value

    @model_validator(mode="after")
    def _kind(self) -> EnvVar:
        if self.secret_ref is not None and (self.secret or self.value is not None):
            raise ValueError(
                "secretRef: reads a value from another Secret; give either it, a value, or "
                "secret: true with a value"
            )
        if not self.secret and self.secret_ref is None and self.value is None:
            self.value = ""
        return self

    @property
    def kind(self) -> str:
        """``plain``, ``secret`` or ``ref``."""
        if self.secret:
            return "secret"
        return "ref" if self.secret_ref is not None else "plain"

    @model_serializer(mode="plain")
    def _public(self) -> dict[str, Any]:
        """What anyone is shown: a secret entry never carries its value."""
        if self.secret:
            return {"name": self.name, "secret": True}
        if self.secret_ref is not None:
            return {"name": self.name, "secretRef": self.secret_ref.model_dump()}
        return {"name": self.name, "value": self.value or ""}


ACCESS_MODES = ("ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany")
ONE_POD: Literal["ReadWriteOnce"] = (
    "ReadWriteOnce"  # mounted read-write by one pod: one replica, Recreate rollouts
)
MAX_MOUNTS = 8
VOLUME_NAME_MAX = 59  # the chart names the pod volume vol-<name>: a DNS label too


class Mount(BaseModel):
    """One of the group's volumes mounted into the app container."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    volume: StrictStr
    path: StrictStr
    read_only: StrictBool = Field(default=False, alias="readOnly")

    @field_validator("volume")
    @classmethod
    def _volume(cls, value: str) -> str:
        return check_dns_label(value, max_length=VOLUME_NAME_MAX)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        parts = value.split("/")
        if (
            not value.startswith("/")
            or value == "/"
            or len(value) > 1024
            or ".." in parts
            or ":" in value
            or _CONTROL.search(value)
            or "\x00" in value
        ):
            raise ValueError(
                f"must be an absolute path other than / (no '..' segment, no ':'; max 1024), "
                f"got {value!r}"
            )
        return value.rstrip("/")


class VolumeSpec(BaseModel):
    """A volume as asked for: a PersistentVolumeClaim of the group."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    name: StrictStr
    size: StrictStr
    storage_class: StrictStr = Field(default="", alias="storageClass")  # "": the first one
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"] = Field(
        default="ReadWriteOnce", alias="accessMode"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns_label(value, max_length=VOLUME_NAME_MAX)

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: object, info: ValidationInfo) -> str:
        return check_quantity(value, kind="memory", strict=_request(info))


class Volume(BaseModel):
    """A volume as recorded in the GitOps repository (``tenants/<group>/apps/volumes/``)."""

    model_config = ConfigDict(extra="forbid")

    group: str
    spec: VolumeSpec
    owner: str = ""
    deleting: str = ""  # an explicit delete released it then (RFC 3339); Flux prunes it next

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def namespace(self) -> str:
        return NAMESPACE_PREFIX + self.group

    @property
    def one_pod(self) -> bool:
        return self.spec.access_mode == ONE_POD


class Resources(BaseModel):
    """Requests per pod of the app container; limits are derived (see render)."""

    model_config = ConfigDict(extra="forbid")

    cpu: str = "100m"
    memory: str = "128Mi"

    @field_validator("cpu", mode="before")
    @classmethod
    def _cpu(cls, value: object, info: ValidationInfo) -> str:
        limits = _limits(info)
        text = check_quantity(value, kind="cpu", strict=_request(info))
        return _in_range(text, low=limits.cpu_min, high=limits.cpu_max, kind="cpu")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: object, info: ValidationInfo) -> str:
        limits = _limits(info)
        text = check_quantity(value, kind="memory", strict=_request(info))
        return _in_range(text, low=limits.memory_min, high=limits.memory_max, kind="memory")


MAX_ARGS = 64  # entries of command, and of args
MAX_ARG_LENGTH = 4096  # characters per entry
# command and args: no control character at all (tab and line breaks included: one line each)
_ARG_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ufeff\ufffe\uffff]")
HEALTH_PATH = re.compile(r"^/[!-~]*$")  # printable ASCII, no space
HEALTH_PATH_MAX = 2048
CPU_TARGET_MAX = 100  # percent of the CPU request (the limit is 2x the request)


class Health(BaseModel):
    """HTTP readiness and liveness checks: ``GET path`` on the app port. A deployment without
    one is checked by a TCP connect to the port."""

    model_config = ConfigDict(extra="forbid")

    path: StrictStr

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not HEALTH_PATH.fullmatch(value) or len(value) > HEALTH_PATH_MAX:
            raise ValueError(
                f"must be a URL path starting with '/' (printable ASCII, no spaces; max "
                f"{HEALTH_PATH_MAX}), got {value!r}"
            )
        return value


class Autoscaling(BaseModel):
    """A HorizontalPodAutoscaler keeps the pods between ``min`` and ``max``, aiming at ``cpu``
    percent of the app container's CPU request."""

    model_config = ConfigDict(extra="forbid")

    min: StrictInt = 1
    max: StrictInt
    cpu: StrictInt = 70

    @field_validator("min", "max")
    @classmethod
    def _bound(cls, value: int, info: ValidationInfo) -> int:
        # the API server refuses minReplicas < 1 and maxReplicas < 1
        # (pkg/apis/autoscaling/validation/validation.go validateHorizontalPodAutoscalerSpec)
        high = _limits(info).max_replicas
        if not 1 <= value <= high:
            raise ValueError(f"must be 1..{high}, got {value}")
        return value

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: int) -> int:
        if not 1 <= value <= CPU_TARGET_MAX:
            raise ValueError(
                f"must be 1..{CPU_TARGET_MAX} (percent of the CPU request), got {value}"
            )
        return value

    @model_validator(mode="after")
    def _order(self) -> Autoscaling:
        if self.max < self.min:
            # ".max: ...": reported as autoscaling.max (see _problems)
            raise ValueError(f".max: must be >= autoscaling.min ({self.min}), got {self.max}")
        return self

    def describe(self) -> str:
        return f"{self.min}..{self.max} at {self.cpu}% cpu"


def _argv(value: list[str], *, what: str) -> list[str]:
    if len(value) > MAX_ARGS:
        raise ValueError(f"must have at most {MAX_ARGS} entries, got {len(value)}")
    for i, arg in enumerate(value):
        bad = _ARG_CONTROL.search(arg)
        if bad:
            raise ValueError(
                f"[{i}]: must not contain control characters (one line each), got "
                f"U+{ord(bad.group()):04X}"
            )
        if len(arg) > MAX_ARG_LENGTH:
            raise ValueError(f"[{i}]: must be at most {MAX_ARG_LENGTH} characters")
    if what == "command" and value and not value[0]:
        raise ValueError("[0]: must not be empty (the program to run)")
    return value


def argv_line(value: list[str]) -> str:
    """A command or args as one shell-like line (``shlex.split`` reads it back exactly)."""
    return shlex.join(value)


class DeploymentSpec(BaseModel):
    """What a user asks for: the fields of the deployment form / API body."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    image: StrictStr
    replicas: StrictInt = 1
    port: StrictInt = 8080
    env: list[EnvVar] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    expose: StrictBool = False
    volumes: list[Mount] = Field(default_factory=list)
    health: Health | None = None  # None: a TCP connect to the port
    command: list[StrictStr] = Field(default_factory=list)  # []: the image's ENTRYPOINT
    args: list[StrictStr] = Field(default_factory=list)  # []: the image's CMD
    # with autoscaling, replicas is 0 (stopped) or, running, autoscaling.min
    autoscaling: Autoscaling | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_dns_label(value, max_length=APP_NAME_MAX)

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        return _argv(value, what="command")

    @field_validator("args")
    @classmethod
    def _args(cls, value: list[str]) -> list[str]:
        return _argv(value, what="args")

    @model_validator(mode="after")
    def _scaled(self, info: ValidationInfo) -> DeploymentSpec:
        """With autoscaling the autoscaler sets the number of pods: replicas is 0 (stopped) or
        left out or within min..max (running; stored as min, which is what it means then)."""
        scaling = self.autoscaling
        if scaling is None:
            return self
        outside = self.replicas and not scaling.min <= self.replicas <= scaling.max
        if "replicas" not in self.model_fields_set:
            self.replicas = scaling.min
        elif outside and _request(info):  # a file read back loads: it runs at the minimum
            raise ValueError(
                f".replicas: must be 0 (stopped) or within autoscaling.min..autoscaling.max "
                f"({scaling.min}..{scaling.max}): the autoscaler sets the number of pods, "
                f"got {self.replicas}"
            )
        if self.replicas:
            self.replicas = scaling.min
        return self

    @property
    def most_replicas(self) -> int:
        """The most pods it runs outside a rollout (autoscaling: its maximum)."""
        if self.autoscaling is not None and self.replicas:
            return self.autoscaling.max
        return self.replicas

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, value: list[Mount]) -> list[Mount]:
        if len(value) > MAX_MOUNTS:
            raise ValueError(f"must have at most {MAX_MOUNTS} entries, got {len(value)}")
        for i, mount in enumerate(value):
            for j, other in enumerate(value[:i]):
                if other.volume == mount.volume:
                    raise ValueError(f"[{i}].volume: {mount.volume!r} is mounted already ([{j}])")
                inner, outer = sorted((mount.path, other.path), key=len, reverse=True)
                if inner == outer or inner.startswith(outer + "/"):
                    raise ValueError(f"[{i}].path: {mount.path} overlaps [{j}].path {other.path}")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str, info: ValidationInfo) -> str:
        match = IMAGE_REFERENCE.fullmatch(value)
        if match is None or len(match["name"]) > 255:
            raise ValueError(f"{IMAGE_RULE}, got {value!r}")
        domain = match["domain"]
        if domain and not ("." in domain or ":" in domain or domain == "localhost"):
            # like docker: a first component without '.' or ':' is a path, so lowercase
            if not re.fullmatch(_PATH_COMPONENT, domain):
                raise ValueError(f"{IMAGE_RULE}, got {value!r}")
            domain = None
        digest = match["digest"]
        if digest:
            algorithm, _, hexpart = digest.partition(":")
            expected = DIGEST_LENGTHS.get(algorithm)
            if expected is not None and len(hexpart) != expected:
                raise ValueError(
                    f"{IMAGE_RULE}; a {algorithm} digest has {expected} hex digits, got {value!r}"
                )
        allowed = _limits(info).allowed_registries
        if allowed and domain not in allowed:
            raise ValueError(
                f"must come from an allowed registry ({', '.join(allowed)}), got {value!r}"
            )
        return value

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: int, info: ValidationInfo) -> int:
        high = _limits(info).max_replicas
        if not 0 <= value <= high:
            raise ValueError(f"must be 0..{high}, got {value}")
        return value

    @field_validator("port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError(f"must be 1..65535, got {value}")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: list[EnvVar], info: ValidationInfo) -> list[EnvVar]:
        high = _limits(info).max_env
        if len(value) > high:
            raise ValueError(f"must have at most {high} entries, got {len(value)}")
        seen: set[str] = set()
        for i, var in enumerate(value):
            if var.name in seen:
                raise ValueError(f"[{i}].name: duplicate name {var.name!r}")
            seen.add(var.name)
        return value


class SecretChange(BaseModel):
    """Who last set a secret value and when (values themselves are never read back)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    by: str
    at: str  # RFC 3339, UTC


class Deployment(BaseModel):
    """A deployment as recorded in the GitOps repository."""

    model_config = ConfigDict(extra="forbid")

    group: str
    id: str
    spec: DeploymentSpec
    owner: str = ""
    restarted_at: str = ""
    # kept from pruning while its HelmRelease moves from one Flux Kustomization to another
    # (gitops-bridge upgrade-repo): kustomize.toolkit.fluxcd.io/prune: disabled
    keep_on_prune: bool = False
    secrets: dict[str, SecretChange] = Field(default_factory=dict)  # env name -> last set
    # rolls out with Recreate: it mounts a ReadWriteOnce volume (one pod at a time)
    recreate: bool = False

    @model_validator(mode="after")
    def _id(self) -> Deployment:
        if not ID_PATTERN.fullmatch(self.id):
            raise ValueError(f"id: must be {ID_LENGTH} characters of a-z0-9, got {self.id!r}")
        return self

    @property
    def app(self) -> str:
        return self.spec.name

    @property
    def name(self) -> str:
        return f"{self.spec.name}-{self.id}"

    @property
    def namespace(self) -> str:
        return NAMESPACE_PREFIX + self.group


_TYPE_RULES = {
    "int_type": "must be a whole number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "dict_type": "must be an object",
}


# "[2].name: ...": a list item's field; ".max: ...": a field the model's own rule names
_ITEM_DETAIL = re.compile(r"^(\[\d+\](\.\w+)?|\.\w+): ")


def _problems(exc: ValidationError, prefix: str = "") -> list[FieldProblem]:
    problems = []
    for error in exc.errors(include_url=False):
        loc = "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]
        ).lstrip(".")
        message = str(error["msg"]).removeprefix("Value error, ")
        kind = error["type"]
        if kind in _TYPE_RULES and loc.startswith("env[") and loc.endswith(".value"):
            message = _TYPE_RULES[kind]  # what was sent may be a secret: never echoed
        elif kind in _TYPE_RULES:
            message = f"{_TYPE_RULES[kind]}, got {error.get('input')!r}"
        elif kind == "extra_forbidden":
            message = "unknown field"
        elif kind == "missing":
            message = "is required"
        if _ITEM_DETAIL.match(message):
            item, _, message = message.partition(": ")  # list item detail: "[2].name: ..."
            loc = f"{loc}{item}".lstrip(".")
        field = f"{prefix}{loc}" if loc else prefix.rstrip(".")
        problems.append(FieldProblem(field, message))
    return problems


def parse_deployment(data: object, *, limits: Limits = DEFAULT_LIMITS) -> DeploymentSpec:
    """Validate a deployment request body; raise InvalidRequest naming each bad field."""
    if not isinstance(data, Mapping):
        raise InvalidRequest.field("", "the body must be a JSON object")
    try:
        return DeploymentSpec.model_validate(data, context={"limits": limits, "request": True})
    except ValidationError as exc:
        raise InvalidRequest.of(_problems(exc)) from None


def parse_volume(data: object) -> VolumeSpec:
    """Validate a volume request body; raise InvalidRequest naming each bad field."""
    if not isinstance(data, Mapping):
        raise InvalidRequest.field("", "the body must be a JSON object")
    try:
        return VolumeSpec.model_validate(data, context={"request": True})
    except ValidationError as exc:
        raise InvalidRequest.of(_problems(exc)) from None


def parse_group(data: object) -> Group:
    if not isinstance(data, Mapping):
        raise InvalidRequest.field("", "the body must be a JSON object")
    try:
        return Group.model_validate(data, context={"request": True})
    except ValidationError as exc:
        raise InvalidRequest.of(_problems(exc)) from None


_MERGED = ("resources", "health", "autoscaling")  # objects a merge patch merges into


def merge_patch(
    spec: DeploymentSpec, patch: Mapping[str, Any], *, limits: Limits
) -> DeploymentSpec:
    """Apply a JSON merge patch (RFC 7386 style, one level for resources, health and
    autoscaling; ``null`` turns health and autoscaling off) and re-validate.

    A patch of ``autoscaling`` alone keeps a running deployment running (its replicas become
    the new minimum; turned off, the old minimum) and a stopped one stopped."""
    data = spec.model_dump()
    for key, value in patch.items():
        if key in _MERGED and isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    if patch.get("autoscaling") is not None and "replicas" not in patch and data["replicas"]:
        del data["replicas"]  # running: the (new) minimum
    return parse_deployment(data, limits=limits)


def spec_differences(before: DeploymentSpec | None, after: DeploymentSpec | None) -> list[str]:
    """What changed between two versions of a deployment, for people (commit messages, history)."""
    if before is None and after is None:
        return []
    if before is None:
        assert after is not None
        return [f"created with image {after.image}, {after.replicas} replicas"]
    if after is None:
        return ["deleted"]
    changes = []
    # running with autoscaling, replicas follows autoscaling.min: its change says nothing more
    follows = after.autoscaling is not None and bool(before.replicas and after.replicas)
    for field in ("image", "replicas", "port", "expose"):
        old, new = getattr(before, field), getattr(after, field)
        if old != new and not (field == "replicas" and follows):
            changes.append(f"{field} {_show(old)} -> {_show(new)}")
    if before.health != after.health:
        changes.append(f"health {_health(before.health)} -> {_health(after.health)}")
    for field in ("command", "args"):
        old_argv, new_argv = getattr(before, field), getattr(after, field)
        if old_argv != new_argv:
            changes.append(f"{field} {_argv_shown(old_argv)} -> {_argv_shown(new_argv)}")
    if before.autoscaling != after.autoscaling:
        changes.append(
            f"autoscaling {_scaling(before.autoscaling)} -> {_scaling(after.autoscaling)}"
        )
    for field in ("cpu", "memory"):
        old, new = getattr(before.resources, field), getattr(after.resources, field)
        if old != new:
            changes.append(f"{field} {old} -> {new}")
    old_mounts = {m.volume: (m.path, m.read_only) for m in before.volumes}
    new_mounts = {m.volume: (m.path, m.read_only) for m in after.volumes}
    for volume in sorted(set(new_mounts) - set(old_mounts)):
        changes.append(f"volume {volume} mounted at {new_mounts[volume][0]}")
    for volume in sorted(set(old_mounts) - set(new_mounts)):
        changes.append(f"volume {volume} unmounted")
    for volume in sorted(k for k in set(old_mounts) & set(new_mounts)):
        if old_mounts[volume] != new_mounts[volume]:
            changes.append(f"volume {volume} mounted at {new_mounts[volume][0]}")
    old_env = {var.name: _shown(var) for var in before.env}
    new_env = {var.name: _shown(var) for var in after.env}
    added = sorted(set(new_env) - set(old_env))
    removed = sorted(set(old_env) - set(new_env))
    changed = sorted(k for k in set(old_env) & set(new_env) if old_env[k] != new_env[k])
    if added:
        changes.append("env added " + ", ".join(added))
    if removed:
        changes.append("env removed " + ", ".join(removed))
    if changed:
        changes.append("env changed " + ", ".join(changed))
    return changes


def _shown(var: EnvVar) -> tuple[str, ...]:
    """An entry as a diff may compare it: a secret's value is not known (secret_differences)."""
    if var.secret:
        return ("secret",)
    if var.secret_ref is not None:
        return ("ref", var.secret_ref.name, var.secret_ref.key)
    return ("value", var.value or "")


def secret_differences(before: Deployment | None, after: Deployment | None) -> list[str]:
    """Which secret values were set again between two versions, by whom (never the values)."""
    if after is None:
        return []
    old = before.secrets if before is not None else {}
    set_now = [
        f"{key} by {change.by}"
        for key, change in sorted(after.secrets.items())
        if old.get(key) != change
    ]
    return ["secret set " + ", ".join(set_now)] if set_now else []


def _health(value: Health | None) -> str:
    return f"http {value.path}" if value is not None else "tcp"


def _argv_shown(value: list[str], *, width: int = 60) -> str:
    """A command or args for a commit message: one line, long ones cut."""
    if not value:
        return "(image default)"
    line = argv_line(value)
    return line if len(line) <= width else line[: width - 1] + "…"


def _scaling(value: Autoscaling | None) -> str:
    return value.describe() if value is not None else "off"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class MergeConflict(ValueError):
    """Both sides changed the same fields differently."""

    def __init__(self, fields: list[str]) -> None:
        super().__init__(", ".join(fields))
        self.fields = fields


def _flat(deployment: Deployment) -> dict[str, Any]:
    spec = deployment.spec
    flat: dict[str, Any] = {
        "image": spec.image,
        "replicas": spec.replicas,
        "port": spec.port,
        "expose": spec.expose,
        "resources.cpu": spec.resources.cpu,
        "resources.memory": spec.resources.memory,
        "restartedAt": deployment.restarted_at,
        # mounts change together: a three-way merge of paths one by one could mount two
        # volumes at one path
        "volumes": tuple((m.volume, m.path, m.read_only) for m in spec.volumes),
        "health": spec.health.path if spec.health is not None else None,
        # a command changes as a whole: its words mean something only together
        "command": tuple(spec.command),
        "args": tuple(spec.args),
        "autoscaling": (
            (spec.autoscaling.min, spec.autoscaling.max, spec.autoscaling.cpu)
            if spec.autoscaling is not None
            else None
        ),
    }
    for var in spec.env:
        # a secret compares by when it was last set: its value is not in this file
        shown = ("secret", deployment.secrets.get(var.name)) if var.secret else _shown(var)
        flat[f"env.{var.name}"] = shown
    return flat


def _env_entry(name: str, shown: tuple[Any, ...]) -> EnvVar:
    if shown[0] == "secret":
        return EnvVar(name=name, secret=True)
    if shown[0] == "ref":
        return EnvVar(name=name, secretRef=SecretRef(name=shown[1], key=shown[2]))
    return EnvVar(name=name, value=shown[1])


def merge_deployments(base: Deployment, ours: Deployment, theirs: Deployment) -> Deployment:
    """Carry the change base -> theirs onto ours, field by field (env per variable).

    Raises MergeConflict naming the fields that ours and theirs both changed differently.
    """
    flat_base, flat_ours, flat_theirs = _flat(base), _flat(ours), _flat(theirs)
    merged = dict(flat_ours)
    conflicts = []
    for key in sorted(set(flat_base) | set(flat_ours) | set(flat_theirs)):
        old, mine, new = flat_base.get(key), flat_ours.get(key), flat_theirs.get(key)
        if new in (old, mine):
            continue
        if mine != old:
            conflicts.append(key)
            continue
        if new is None:
            merged.pop(key, None)
        else:
            merged[key] = new
    if conflicts:
        raise MergeConflict(conflicts)
    scaling = merged.get("autoscaling")
    replicas = merged["replicas"]
    if scaling is not None and replicas:
        replicas = scaling[0]  # running with autoscaling: replicas is the minimum
    env_order = [v.name for v in ours.spec.env] + [v.name for v in theirs.spec.env]
    names = [n for i, n in enumerate(env_order) if n not in env_order[:i] and f"env.{n}" in merged]
    spec = ours.spec.model_copy(
        update={
            "image": merged["image"],
            "replicas": replicas,
            "port": merged["port"],
            "expose": merged["expose"],
            "resources": Resources.model_construct(
                cpu=merged["resources.cpu"], memory=merged["resources.memory"]
            ),
            "env": [_env_entry(n, merged[f"env.{n}"]) for n in names],
            "volumes": [Mount(volume=v, path=p, readOnly=r) for v, p, r in merged["volumes"]],
            "health": Health(path=merged["health"]) if merged.get("health") else None,
            "command": list(merged.get("command") or ()),
            "args": list(merged.get("args") or ()),
            "autoscaling": (
                Autoscaling.model_construct(min=scaling[0], max=scaling[1], cpu=scaling[2])
                if scaling is not None
                else None
            ),
        }
    )
    secrets = {
        n: merged[f"env.{n}"][1]
        for n in names
        if merged[f"env.{n}"][0] == "secret" and merged[f"env.{n}"][1] is not None
    }
    return ours.model_copy(
        update={"spec": spec, "restarted_at": merged["restartedAt"], "secrets": secrets}
    )
