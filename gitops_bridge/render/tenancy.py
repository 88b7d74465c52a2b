"""What may live in a group's folder: the rules the bridge reads ``tenants/<group>/`` by.

People commit to the repository too, and what lands in a group's folder is applied: the
platform Kustomization applies the files ``tenants/<group>/kustomization.yaml`` lists, as
kustomize-controller itself (cluster-wide rights), and the group's Kustomization applies
every ``.yaml``/``.yml`` below ``apps/`` as the group's service account. So the bridge
checks each such file against an allow-list before it uses it, and reports the ones that
break a rule (path + rule) instead of using them:

- ``kustomization.yaml`` lists only the group's platform files (``layout.PLATFORM_FILES``)
  that exist (and, while ``upgrade-repo`` moves an earlier layout, ``apps/`` files);
- each platform file holds only its own kinds (``PLATFORM_KINDS``), in the group's
  namespace; the Namespace stays Pod Security "restricted"; Flux objects impersonate the
  group's account; RoleBindings bind only accounts of the group's namespace;
- ``apps/`` holds one HelmRelease per file directly in it, named like the file, in the
  group's namespace, impersonating the group's account, readable as a deployment of this
  group; no kustomization file (it would replace the list Flux generates) and no other
  files Flux would apply, but ``<app>-<id>.secret.yaml`` (the deployment's SOPS-encrypted
  Secret) and ``volumes/<name>.yaml`` (one PersistentVolumeClaim each);
- every object's labels and annotations are valid Kubernetes syntax.

Pure functions: documents in, problems (text naming what is wrong and what is allowed) out.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from gitops_bridge import apirules, sops
from gitops_bridge.models import OWN_SECRET_SUFFIX, Deployment, Group, Volume
from gitops_bridge.render import layout
from gitops_bridge.render.helmrelease import parse_helmrelease
from gitops_bridge.render.tenant import parse_group
from gitops_bridge.render.volume import VOLUMES_DIR, parse_volume

KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
CORE = ""
HELMRELEASE = ("helm.toolkit.fluxcd.io", "HelmRelease")
FLUX_KUSTOMIZATION = ("kustomize.toolkit.fluxcd.io", "Kustomization")
NAMESPACE = (CORE, "Namespace")
SECRET = (CORE, "Secret")
PLATFORM_KINDS: dict[str, frozenset[tuple[str, str]]] = {
    "namespace.yaml": frozenset({NAMESPACE}),
    "quota.yaml": frozenset({(CORE, "ResourceQuota"), (CORE, "LimitRange")}),
    "rbac.yaml": frozenset(
        {(CORE, "ServiceAccount"), ("rbac.authorization.k8s.io", "RoleBinding")}
    ),
    "networkpolicy.yaml": frozenset({("networking.k8s.io", "NetworkPolicy")}),
    layout.SYNC_FILE: frozenset(
        {("source.toolkit.fluxcd.io", "GitRepository"), FLUX_KUSTOMIZATION}
    ),
    layout.NOTIFICATIONS_FILE: frozenset(
        {
            ("notification.toolkit.fluxcd.io", "Provider"),
            ("notification.toolkit.fluxcd.io", "Alert"),
        }
    ),
    layout.OCI_SOURCE_FILE: frozenset({("source.toolkit.fluxcd.io", "OCIRepository")}),
    layout.GROUP_KEY_FILE: frozenset({SECRET}),
    layout.FRP_FILE: frozenset({SECRET}),
}
assert set(PLATFORM_KINDS) == set(layout.PLATFORM_FILES)
POD_SECURITY = "pod-security.kubernetes.io/enforce"
KUSTOMIZATION_KEYS = ("apiVersion", "kind", "resources")

# What a path under tenants/<group>/ is to the bridge
GROUP_RECORD = "namespace"  # the group record (and a platform file)
PLATFORM = "platform"
INDEX = "kustomization"  # the group's platform kustomization.yaml
APP = "app"  # apps/<app>-<id>.yaml
SECRETS = "secrets"  # apps/<app>-<id>.secret.yaml: the deployment's Secret, SOPS-encrypted
VOLUME = "volume"  # apps/volumes/<name>.yaml: a PersistentVolumeClaim of the group
PVC = (CORE, "PersistentVolumeClaim")
STRAY = "stray"  # applied by Flux from apps/, but not a place the bridge allows


class NotAllowed(ValueError):
    """A file breaks the rules of a group's folder; the message names them."""


def role(path: str) -> str | None:
    """What the path under ``tenants/<group>/`` is; None: nothing applies or reads it."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != layout.TENANTS_DIR:
        return None
    name = parts[-1]
    if len(parts) == 3:
        if name == "namespace.yaml":
            return GROUP_RECORD
        if name in layout.PLATFORM_FILES:
            return PLATFORM
        if name == "kustomization.yaml":
            return INDEX
        return STRAY if name in KUSTOMIZATION_FILES else None  # a second one: build fails
    if parts[2] != layout.APPS_DIR:
        return None  # unlisted (the index may list only platform files): not applied
    if len(parts) == 4 and name.endswith(layout.SECRET_SUFFIX):
        return SECRETS
    if len(parts) == 5 and parts[3] == VOLUMES_DIR and name.endswith(".yaml"):
        return VOLUME
    if len(parts) == 4 and name.endswith(".yaml") and name not in KUSTOMIZATION_FILES:
        return APP
    if name in KUSTOMIZATION_FILES or name.endswith((".yaml", ".yml")):
        return STRAY
    return None


def stray_problem(path: str) -> str:
    """Why a file Flux would apply (or build) from a group's folder is not allowed there."""
    name = path.rsplit("/", 1)[1]
    if path.count("/") == 2:
        return (
            "not allowed: kustomize refuses a folder with two kustomization files; the "
            "group's is kustomization.yaml, written by gitops-bridge: remove this one"
        )
    if name in KUSTOMIZATION_FILES:
        return (
            "not allowed: a kustomization file in apps/ replaces the list Flux generates "
            "of the deployments' files; remove it"
        )
    return (
        "not allowed: Flux applies every .yaml/.yml below apps/ as the group; the bridge "
        "keeps one HelmRelease per file directly in apps/ (apps/<app>-<id>.yaml)"
    )


def group_record(group: str, path: str, documents: list[Any]) -> Group:
    """The group a folder's namespace.yaml records (raises NotAllowed, or the parse error)."""
    problems = _objects(group, path, documents)
    if problems:
        raise NotAllowed("; ".join(problems))
    record = parse_group(documents[0])
    if record.name != group:
        raise NotAllowed(f"records group {record.name!r}, not the folder's {group!r}")
    return record


def platform_file(group: str, path: str, documents: list[Any]) -> None:
    problems = _objects(group, path, documents)
    if problems:
        raise NotAllowed("; ".join(problems))


def app(group: str, path: str, documents: list[Any]) -> Deployment:
    """The deployment an ``apps/`` file holds (raises NotAllowed, or the parse error)."""
    if len(documents) != 1:
        raise NotAllowed(f"holds {len(documents)} documents: one HelmRelease per file in apps/")
    problems = _objects(group, path, documents)
    if problems:
        raise NotAllowed("; ".join(problems))
    deployment = parse_helmrelease(documents[0])
    stem = path.rsplit("/", 1)[1].removesuffix(".yaml")
    if deployment.group != group:
        raise NotAllowed(
            f"label {layout.LABEL_GROUP} is {deployment.group!r}: must be the folder's group "
            f"{group!r}"
        )
    if deployment.name != stem:
        raise NotAllowed(
            f"the labels say deployment {deployment.name!r}: the file must be named after it "
            f"({deployment.name}.yaml)"
        )
    return deployment


def volume(group: str, path: str, documents: list[Any]) -> Volume:
    """The volume an ``apps/volumes/`` file holds: one PersistentVolumeClaim of the group's
    namespace, named like the file (raises NotAllowed, or the parse error)."""
    if len(documents) != 1:
        raise NotAllowed(f"holds {len(documents)} documents: one PersistentVolumeClaim per file")
    problems = _objects(group, path, documents)
    if problems:
        raise NotAllowed("; ".join(problems))
    found = parse_volume(documents[0])
    stem = path.rsplit("/", 1)[1].removesuffix(".yaml")
    if found.group != group:
        raise NotAllowed(
            f"label {layout.LABEL_GROUP} is {found.group!r}: must be the folder's group {group!r}"
        )
    if found.name != stem:
        raise NotAllowed(f"the claim is {found.name!r}: the file must be named {found.name}.yaml")
    return found


def secrets_file(group: str, path: str, documents: list[Any]) -> None:
    """Checks ``apps/<name>.secret.yaml``: one Secret ``<name>-env`` of the group's
    namespace, SOPS-encrypted (raises NotAllowed)."""
    if len(documents) != 1:
        raise NotAllowed(f"holds {len(documents)} documents: one Secret per file")
    problems = _objects(group, path, documents)
    if problems:
        raise NotAllowed("; ".join(problems))
    stem = path.rsplit("/", 1)[1].removesuffix(layout.SECRET_SUFFIX)
    name = (documents[0].get("metadata") or {}).get("name")
    if name != stem + OWN_SECRET_SUFFIX:
        raise NotAllowed(f"the Secret must be named {stem}{OWN_SECRET_SUFFIX}, got {name!r}")


def index(group: str, documents: list[Any], *, present: set[str]) -> list[str]:
    """Problems of ``tenants/<group>/kustomization.yaml``; ``present``: the folder's files
    (paths relative to it)."""
    if len(documents) != 1 or not isinstance(documents[0], dict):
        return ["must be one Kustomization (kustomize.config.k8s.io) listing platform files"]
    document = documents[0]
    problems = [
        f"key {key!r} not allowed: the platform kustomization only lists files "
        f"({', '.join(KUSTOMIZATION_KEYS)})"
        for key in document
        if key not in KUSTOMIZATION_KEYS
    ]
    resources = document.get("resources") or []
    if not isinstance(resources, list):
        return [*problems, "resources must be a list of file names"]
    allowed = ", ".join(layout.PLATFORM_FILES)
    for entry in resources:
        if not isinstance(entry, str):
            problems.append(f"lists {entry!r}: entries are file names")
        elif not (entry in layout.PLATFORM_FILES or role(f"tenants/{group}/{entry}") == APP):
            problems.append(
                f"lists {entry!r}: the platform applies only the group's platform files "
                f"({allowed}); what the group runs goes in apps/"
            )
        elif entry not in present:
            problems.append(f"lists {entry!r}, which does not exist")
    return problems


def describe(exc: Exception) -> str:
    """Why a file cannot be used, for a person to act on."""
    if isinstance(exc, NotAllowed):
        return f"not allowed: {exc}"
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"invalid YAML: {exc.problem or exc.context}{where}"
    if isinstance(exc, YAMLError):
        return f"invalid YAML: {exc}"
    if isinstance(exc, ValidationError):
        fields = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        return f"not a deployment gitops-bridge can read: {fields}"
    if isinstance(exc, KeyError):
        return f"not a file gitops-bridge can read: {exc.args[0]!r} is missing"
    return f"cannot be read: {type(exc).__name__}: {exc}"


def _objects(group: str, path: str, documents: list[Any]) -> list[str]:
    name = path.rsplit("/", 1)[1]
    if name.endswith(layout.SECRET_SUFFIX):
        allowed = frozenset({SECRET})
    elif role(path) == VOLUME:
        allowed = frozenset({PVC})
    else:
        allowed = PLATFORM_KINDS.get(name, frozenset({HELMRELEASE}))
    namespace = f"group-{group}"
    problems: list[str] = []
    if not documents:
        problems.append("holds no object")
    for number, body in enumerate(documents, start=1):
        where = f"object {number}" if len(documents) > 1 else "the object"
        if not isinstance(body, dict):
            problems.append(f"{where} is not a mapping")
            continue
        kind = (_api_group(body), str(body.get("kind")))
        if kind not in allowed:
            names = ", ".join(sorted(k for _, k in allowed))
            problems.append(
                f"{where}: kind {kind[1]} ({body.get('apiVersion')}) is not allowed in "
                f"{name}: allowed {names}"
            )
            continue
        problems += [f"{where}: {p}" for p in _object(body, kind, namespace)]
    return problems


def _object(body: dict[str, Any], kind: tuple[str, str], namespace: str) -> list[str]:
    metadata = body.get("metadata")
    if not isinstance(metadata, dict):
        return ["metadata is missing"]
    problems = _labels(metadata.get("labels"), "metadata.labels")
    problems += apirules.annotation_set(metadata.get("annotations"), "metadata.annotations")
    if kind == NAMESPACE:
        if metadata.get("name") != namespace:
            problems.append(f"the Namespace must be {namespace}, got {metadata.get('name')!r}")
        enforce = (metadata.get("labels") or {}).get(POD_SECURITY)
        if enforce != "restricted":
            problems.append(f"label {POD_SECURITY} must stay 'restricted', got {enforce!r}")
        return problems
    if metadata.get("namespace") != namespace:
        problems.append(
            f"namespace must be the group's {namespace}, got {metadata.get('namespace')!r}"
        )
    if kind == SECRET and not sops.is_encrypted(body):
        problems.append(
            "a Secret in Git must be SOPS-encrypted (gitops-bridge writes them so): this one "
            "is plaintext; remove it and set its values through gitops-bridge"
        )
    spec: dict[str, Any] = body["spec"] if isinstance(body.get("spec"), dict) else {}
    if kind == HELMRELEASE:
        values = spec["values"] if isinstance(spec.get("values"), dict) else {}
        problems += _labels(values.get("labels"), "spec.values.labels")  # the pods' labels
    if kind in (HELMRELEASE, FLUX_KUSTOMIZATION):
        account = spec.get("serviceAccountName")
        if account != layout.SERVICE_ACCOUNT:
            problems.append(
                f"spec.serviceAccountName must be {layout.SERVICE_ACCOUNT} (Flux impersonates "
                f"the group's account), got {account!r}"
            )
    if kind[1] == "RoleBinding":
        for subject in body.get("subjects") or []:
            if not isinstance(subject, dict) or (
                subject.get("kind") == "ServiceAccount" and subject.get("namespace") != namespace
            ):
                problems.append(f"subjects: only accounts of {namespace} may be bound here")
    return problems


def _labels(mapping: object, where: str) -> list[str]:
    problems = apirules.label_set(mapping, where)
    if isinstance(mapping, dict):
        problems += [
            f"{where}[{key!r}]: a label value must be a string, got {value!r}"
            for key, value in mapping.items()
            if not isinstance(value, str)
        ]
    return problems


def _api_group(body: dict[str, Any]) -> str:
    version = str(body.get("apiVersion") or "")
    return version.rsplit("/", 1)[0] if "/" in version else CORE
