"""Plays Flux against a ``FakeKube`` for a GitOps repository written by gitops-bridge (test code).

Neither Kubernetes nor Flux can run here. ``FluxStandIn.reconcile(commit)`` does, for one
commit, what Flux's controllers do, with the real tools (``git``, ``kubectl kustomize``,
``helm template``); Kubernetes' own controllers are ``tests/kubecontrollers.py`` and the API
server's admission is ``tests/kubefake.py``. Each behaviour names where Flux does it
(fluxcd/<controller> files, or fluxcd.io docs pages):

Lockdown. By default the stand-in runs as Flux's multi-tenancy lockdown recommends
(fluxcd/flux2-multi-tenancy ``clusters/staging/flux-system/kustomization.yaml``):
``--no-cross-namespace-refs=true`` on every controller and ``--default-service-account``
(``default``) on kustomize- and helm-controller; the ``flux-system`` Kustomization made by
bootstrap runs as ``kustomize-controller``. Both flags can be turned off.

source-controller
  - The ``flux-system`` GitRepository is published for the commit (artifact revision
    ``<branch>@sha1:<commit>``). Every other GitRepository in the cluster whose ``spec.url``
    is the stand-in's remote gets the same commit as its artifact, restricted to its
    ``spec.sparseCheckout`` directories (``internal/controller/gitrepository_controller.go``);
    another URL cannot be cloned (Ready False ``GitOperationFailed``).
  - Charts are packaged as source-controller does: from a GitRepository with
    ``reconcileStrategy: Revision`` the version becomes ``<version>+<commit[:12]>``, with
    ``ChartVersion`` (the default) it stays ``<version>`` (fluxcd.io/flux/components/source/
    helmcharts/#reconcile-strategy; source-controller PR #308). A chart from an
    OCIRepository (``chartRef``) gets ``+<digest[:12]>`` and its tag must equal the chart's
    version (helm-controller ``mutateChartWithSourceRevision``). The OCIRepository's
    content is the commit's ``charts/<name>`` (what ``gitops-bridge chart push`` publishes).

kustomize-controller (``internal/controller/kustomization_controller.go``)
  - sourceRef in another namespace: Ready False + Stalled ``AccessDenied`` "can't access
    '<Kind>/<ns>/<name>', cross-namespace references have been blocked".
  - dependsOn: every dependency must exist, have observedGeneration == generation, be Ready,
    and (same source) have applied the source's revision; else Ready False
    ``DependencyNotReady`` "dependency '<ns>/<name>' is not ready" (``checkDependencies``).
  - A path without a kustomization file gets one generated listing every YAML file below it
    (fluxcd/pkg ``kustomize/kustomize_generator.go`` ``scanManifests``).
  - Impersonation: ``spec.serviceAccountName``, else the default service account, in the
    Kustomization's namespace; every object is authorized for that account (the RBAC model
    below) before anything is applied.
  - Decryption (``internal/decryptor/decryptor.go``; fluxcd.io/flux/guides/mozilla-sops/,
    /flux/components/kustomize/kustomizations/#decryption): with ``spec.decryption``
    (provider ``sops``) the ``secretRef`` Secret is read from the Kustomization's namespace
    before the build (missing: Ready False ``BuildFailed`` ``secrets "<name>" not found``);
    every data key ending in ``.agekey`` holds age identities. Each built object with a
    ``sops.mac`` (any kind; not when annotated ``kustomize.toolkit.fluxcd.io/decrypt:
    disabled``) is decrypted before anything is applied; a failure is ``BuildFailed``
    "decryption failed for '<name>': failed to decrypt and format '<ns>/<name>' <Kind> data:
    ..." with sops' own wording (``error decrypting sops tree: ... cipher: message
    authentication failed``; no data key: ``cannot get sops data key: Error getting data
    key: 0 successful groups required, got 0``, where sops prints a longer per-key report).
    As the controller (``checkSopsMac`` off by default) the MAC is not verified. Secrets
    whose ``data`` entries hold whole SOPS files are not modelled.
  - Without decryption an encrypted v1 Secret stops the apply before any request:
    ReconciliationFailed "Secret/<ns>/<name> is SOPS encrypted, configuring decryption is
    required for this secret to be reconciled" (``apply``, ``decryptor.IsEncryptedSecret``).
    Any other encrypted object reaches the API server, which refuses the unknown ``sops``
    field (``tests/kubefake.py``): "<Kind>/<ns>/<name> dry-run failed: failed to create
    typed patch object ..." (fluxcd/pkg ``ssa/errors`` omits an empty reason).
  - Apply is staged (Namespaces first, then the rest) and each stage is dry-run first
    (fluxcd/pkg ``ssa`` ``ApplyAllStaged``): an object the API server refuses fails the
    whole stage with ``<Kind>/<ns>/<name> dry-run failed (<Reason>): <message>``, Ready False
    ``ReconciliationFailed``, and nothing is pruned. After a successful apply, objects of
    the previous inventory that are gone are pruned; then ``lastAppliedRevision``,
    ``inventory`` and Ready ``ReconciliationSucceeded``. Prune (and garbage collection)
    skips objects marked ``kustomize.toolkit.fluxcd.io/prune: disabled`` (or ``reconcile:
    disabled``) in the cluster, and objects another Kustomization took over. A DELETE of an
    object with finalizers only marks it (a claim goes once no pod uses it).
  - Apply is server-side apply: fields Git never set stay as the cluster has them; for a
    PersistentVolumeClaim that is spec.volumeName, a defaulted class or volume mode and the
    PV controller's annotations (the API server would refuse the claim without them).
  - A deleted Kustomization is finalized (``finalize``, ``finalizerShouldDeleteResources``):
    unless suspended, its inventory is deleted for deletionPolicy Delete/WaitForTermination,
    or MirrorPrune (the default) with ``prune: true``, with the prune exclusions, as its
    account; Orphan, or MirrorPrune with ``prune: false``, leaves everything.
  - kube-controller-manager runs beside Flux: after each Kustomization's apply and prune the
    storage controllers run (``kubecontrollers.Volumes``), so a claim applied from Git is
    Bound when ``reconcile`` returns (if its class exists and binds immediately).

helm-controller (``internal/controller/helmrelease_controller.go``, ``internal/reconcile``)
  - chart sourceRef / chartRef in another namespace: Ready False + Stalled ``AccessDenied``.
  - A missing source: Ready False ``ArtifactFailed``.
  - Values reach Helm as a map (written as JSON for ``helm template``, no YAML re-typing).
  - Install or upgrade only when the chart version or the values digest differ from the
    deployed release (``action.DetermineReleaseState``); ``upgrades`` counts them.
  - Rendered objects are authorized for the release's service account and dry-run through
    the API server; a refusal is a failed install (uninstalled) or upgrade (rolled back).
  - Scenarios keyed by HelmRelease name (``success``, ``failed-upgrade``, ``crashloop``,
    ``oomkilled``, ``stalled``, ``progressing``) force the documented outcomes of a release;
    ``crashloop`` and ``oomkilled`` install it, and the kubelet (``tests/kubelet.py``) then
    crash-loops its app container, exiting with 1 or killed out of memory (137).
  - A pruned HelmRelease is deleted gracefully (finalizer), then uninstalled;
    ``hold_deletes=True`` leaves it in that deleting state until the next reconcile.

notification-controller (``internal/server/event_handlers.go``)
  - Each release action and Kustomization result is an event; ``deliver(post)`` sends it to
    every Alert whose event source matches as the controller matches: same kind, namespace
    equal to the source's (default: the Alert's; compared literally, no wildcard), name
    equal or ``*``, severity; locked down, an event from another namespace than the
    Alert's is dropped. The Provider (``generic-hmac``) signs the JSON body with the
    ``token`` of its Secret: ``X-Signature: sha256=<hex>``.

RBAC model for impersonation: ``flux-system/kustomize-controller`` and ``helm-controller``
are cluster-admin (fluxcd/flux2 ``manifests/rbac/reconciler.yaml``). Any other account may
act in a namespace where a RoleBinding binds it to ``cluster-admin``, ``admin`` or ``edit``;
``admin``/``edit`` cover namespaced objects including the Flux kinds (aggregated by
``manifests/rbac/edit.yaml``) but not ResourceQuota, LimitRange (read-only) nor
cluster-scoped objects (kubernetes ``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/
policy.go``); ``edit`` cannot write RoleBindings.

Not modelled: intervals and retries (nothing happens between ``reconcile`` calls),
health checks and ``wait``, post-build substitution, valuesFrom, HelmRepository
charts, drift detection, Helm tests, ReplicaSet objects.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitops_bridge import sops
from gitops_bridge.render import yamlio
from tests import kubecontrollers
from tests.kubefake import ApiError, FakeKube, now

Obj = dict[str, Any]
Key = tuple[str, str]
Ref = tuple[str, str, str, str]  # apiVersion, kind, namespace, name

HELMRELEASE: Key = ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
KUSTOMIZATION: Key = ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
GITREPOSITORY: Key = ("source.toolkit.fluxcd.io/v1", "GitRepository")
OCIREPOSITORY: Key = ("source.toolkit.fluxcd.io/v1", "OCIRepository")
ALERT: Key = ("notification.toolkit.fluxcd.io/v1beta3", "Alert")
PROVIDER: Key = ("notification.toolkit.fluxcd.io/v1beta3", "Provider")
NAMESPACE: Key = ("v1", "Namespace")
SECRET: Key = ("v1", "Secret")
ROLEBINDING: Key = ("rbac.authorization.k8s.io/v1", "RoleBinding")
DEPLOYMENT: Key = ("apps/v1", "Deployment")
POD: Key = ("v1", "Pod")
PVC: Key = ("v1", "PersistentVolumeClaim")
FLUX_NAMESPACE = "flux-system"
SOURCE = "flux-system"
FINALIZER = "finalizers.fluxcd.io"
MANAGED_BY = "app.kubernetes.io/managed-by"
KS_NAME = "kustomize.toolkit.fluxcd.io/name"
KS_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
SCENARIOS = frozenset(
    {"success", "failed-upgrade", "crashloop", "oomkilled", "stalled", "progressing"}
)
# Kinds gitops-bridge writes under tenants/ (checked for pruning besides the inventory).
TENANT_KINDS: tuple[Key, ...] = (
    NAMESPACE,
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("v1", "ServiceAccount"),
    ROLEBINDING,
    ("networking.k8s.io/v1", "NetworkPolicy"),
    GITREPOSITORY,
    KUSTOMIZATION,
    OCIREPOSITORY,
    PROVIDER,
    ALERT,
    HELMRELEASE,
    PVC,
)
# Kinds a generic-app release can own.
HPA: Key = ("autoscaling/v2", "HorizontalPodAutoscaler")
WORKLOAD_KINDS: tuple[Key, ...] = (DEPLOYMENT, ("v1", "Service"), ("v1", "ConfigMap"), HPA)
CLUSTER_SCOPED = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
)
CONTROLLERS = frozenset(
    {(FLUX_NAMESPACE, "kustomize-controller"), (FLUX_NAMESPACE, "helm-controller")}
)
READ_ONLY_FOR_ADMIN = frozenset({"ResourceQuota", "LimitRange"})
HISTORY_LIMIT = 5
TOOL_TIMEOUT = 60
FAILURE = "context deadline exceeded"
DEFAULT_URL = "ssh://git@git.code-hub.com/platform/gitops.git"
DECRYPT_ANNOTATION = "kustomize.toolkit.fluxcd.io/decrypt"
AGE_KEY_SUFFIX = ".agekey"


@dataclass(frozen=True)
class _Chart:
    path: Path  # a packaged copy: Chart.yaml carries the version Flux gives it
    name: str
    version: str
    app_version: str | None


@dataclass
class _Run:
    """One reconcile: the exported commit and what was asked of it."""

    root: Path
    commit: str
    revision: str
    scenario: dict[str, str]
    hold_deletes: bool
    size: int = 0
    releases: list[Obj] = field(default_factory=list)
    artifacts: dict[tuple[str, str], Path] = field(default_factory=dict)  # GitRepository


@dataclass(frozen=True)
class Event:
    """A Flux event as the controllers send it to notification-controller."""

    kind: str
    namespace: str
    name: str
    api_version: str
    severity: str
    reason: str
    message: str
    revision: str
    controller: str

    def payload(self) -> Obj:
        group = self.api_version.rpartition("/")[0]
        return {
            "involvedObject": {
                "kind": self.kind,
                "namespace": self.namespace,
                "name": self.name,
                "apiVersion": self.api_version,
            },
            "severity": self.severity,
            "timestamp": now(),
            "message": self.message,
            "reason": self.reason,
            # notification-controller strips the involved object's API group from the keys
            # (combineEventMetadata, RFC 0008)
            "metadata": {"revision": self.revision} if self.revision else {},
            "reportingController": self.controller,
            "reportingInstance": f"{self.controller}-{_sha256(group)[:10]}",
        }


class _Refused(Exception):
    """A controller step failed: the Ready reason and message to report."""

    def __init__(self, reason: str, message: str, *, stalled: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.stalled = stalled


def _key(obj: Obj) -> Key:
    return (obj["apiVersion"], obj["kind"])


def _ref(obj: Obj) -> Ref:
    meta = obj["metadata"]
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def config_digest(values: Obj) -> str:
    """Flux's digest of the release values (canonical JSON, sha256)."""
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return f"sha256:{_sha256(canonical)}"


def inventory_id(obj: Obj) -> str:
    """``<namespace>_<name>_<group>_<kind>`` as in a Kustomization's status.inventory."""
    api_version, kind, namespace, name = _ref(obj)
    group = api_version.rpartition("/")[0]
    return f"{namespace}_{name}_{group}_{kind}"


def _from_inventory(entry: Obj) -> Ref:
    namespace, name, group, kind = entry["id"].split("_")
    api_version = f"{group}/{entry['v']}" if group else entry["v"]
    return (api_version, kind, namespace, name)


def _condition(
    previous: list[Obj], type_: str, status: str, reason: str, message: str, generation: int
) -> Obj:
    """A metav1.Condition; lastTransitionTime is kept while the status does not change."""
    before = next((c for c in previous if c.get("type") == type_), None)
    moment = before["lastTransitionTime"] if before and before["status"] == status else now()
    return {
        "type": type_,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": moment,
        "reason": reason,
        "message": message,
    }


def _display(obj: Obj) -> str:
    """``Kind/namespace/name`` (``Kind/name`` when cluster-scoped), as fluxcd/pkg ssa shows it."""
    namespace = obj["metadata"].get("namespace")
    name = obj["metadata"]["name"]
    return f"{obj['kind']}/{namespace}/{name}" if namespace else f"{obj['kind']}/{name}"


def _plural(kind: str) -> str:
    return kind.lower() + ("es" if kind.endswith("s") else "s")


def _resource(api_version: str, kind: str) -> str:
    group = api_version.rpartition("/")[0]
    return f"{_plural(kind)}.{group}" if group else _plural(kind)


class FluxStandIn:
    """Reconciles commits of a GitOps repository into a FakeKube, as Flux would."""

    def __init__(
        self,
        fake: FakeKube,
        *,
        remote: Path,
        branch: str = "main",
        helm: str,
        kubectl: str,
        cluster: str | None = None,
        url: str = DEFAULT_URL,
        no_cross_namespace_refs: bool = True,
        default_service_account: str | None = "default",
    ) -> None:
        """``cluster``: the ``clusters/<cluster>`` to apply (needed when there are several);
        ``url``: how Flux clones the remote (GitRepository spec.url)."""
        self.fake = fake
        self.remote = Path(remote)
        self.branch = branch
        self.helm = helm
        self.kubectl = kubectl
        self.cluster = cluster
        self.url = url
        self.no_cross_namespace_refs = no_cross_namespace_refs
        self.default_service_account = default_service_account
        self.workloads = kubecontrollers.Workloads(fake)
        self.upgrades: Counter[tuple[str, str]] = Counter()  # installs + upgrades per release
        self.events: list[Event] = []  # not yet delivered
        self.delivered: list[tuple[str, Obj]] = []  # (address, payload)
        self.dispatch_errors: list[str] = []
        # kubectl/helm output by the digest of their inputs: commits that do not touch a
        # directory or a release skip the tools (each run is 50-150 ms here).
        self._builds: dict[str, list[Obj]] = {}
        self._renders: dict[str, list[Obj]] = {}

    # ---- the one entry point -------------------------------------------------------------

    def reconcile(
        self,
        commit: str | None = None,
        *,
        scenario: dict[str, str] | None = None,
        hold_deletes: bool = False,
    ) -> str:
        """Apply ``commit`` (default: the branch head); returns the full commit applied.

        ``scenario`` maps HelmRelease names to one of SCENARIOS (default ``success``).
        """
        wanted = scenario or {}
        unknown = set(wanted.values()) - SCENARIOS
        if unknown:
            raise ValueError(f"unknown scenario {sorted(unknown)}; choose from {sorted(SCENARIOS)}")
        sha = self._git(
            "rev-parse", "--verify", f"{commit or 'refs/heads/' + self.branch}^{{commit}}"
        )
        with tempfile.TemporaryDirectory(prefix="fluxstandin-") as tmp:
            run = _Run(Path(tmp), sha, f"{self.branch}@sha1:{sha}", dict(wanted), hold_deletes)
            self._export(run)
            self._publish_source(run)
            cluster_dir = self._cluster_dir(run.root / "repo")
            root_spec: Obj = {
                "interval": "10m0s",
                "path": f"./{cluster_dir.relative_to(run.root / 'repo').as_posix()}",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": SOURCE},
            }
            if self.default_service_account is not None:
                root_spec["serviceAccountName"] = "kustomize-controller"
            root_ks = self._apply_merged(
                {
                    "apiVersion": KUSTOMIZATION[0],
                    "kind": KUSTOMIZATION[1],
                    "metadata": {"name": SOURCE, "namespace": FLUX_NAMESPACE},
                    "spec": root_spec,
                }
            )
            self._kustomizations(run, root_ks)
            for release in sorted(run.releases, key=_ref):
                self._reconcile_release(run, release)
        return sha

    # ---- source-controller ---------------------------------------------------------------

    def _git(self, *args: str, binary: bool = False) -> Any:
        where = ["--git-dir", str(self.remote)] if (self.remote / "HEAD").is_file() else []
        result = subprocess.run(
            ["git", *where, *args],
            capture_output=True,
            text=not binary,
            check=True,
            timeout=TOOL_TIMEOUT,
            cwd=None if where else self.remote,
        )
        return result.stdout if binary else result.stdout.strip()

    def _export(self, run: _Run) -> None:
        archive = self._git("archive", "--format=tar", run.commit, binary=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(run.root / "repo", filter="data")
        run.size = len(archive)
        run.artifacts[(FLUX_NAMESPACE, SOURCE)] = run.root / "repo"

    def _publish_source(self, run: _Run) -> None:
        self._apply_namespace(FLUX_NAMESPACE)
        repo = self._apply_merged(
            {
                "apiVersion": GITREPOSITORY[0],
                "kind": GITREPOSITORY[1],
                "metadata": {"name": SOURCE, "namespace": FLUX_NAMESPACE},
                "spec": {"interval": "1m0s", "ref": {"branch": self.branch}, "url": self.url},
            }
        )
        self._source_ready(run, repo)

    def _source_ready(self, run: _Run, repo: Obj) -> None:
        namespace, name = repo["metadata"]["namespace"], repo["metadata"]["name"]
        path = f"gitrepository/{namespace}/{name}/{run.commit}.tar.gz"
        message = f"stored artifact for revision '{run.revision}'"
        generation = repo["metadata"]["generation"]
        previous = (repo.get("status") or {}).get("conditions", [])
        status: Obj = {
            "observedGeneration": generation,
            "artifact": {
                "digest": f"sha256:{_sha256(run.commit + namespace + name)}",
                "lastUpdateTime": now(),
                "path": path,
                "revision": run.revision,
                "size": run.size,
                "url": f"http://source-controller.{FLUX_NAMESPACE}.svc.cluster.local./{path}",
            },
            "conditions": [
                _condition(previous, "Ready", "True", "Succeeded", message, generation),
                _condition(previous, "ArtifactInStorage", "True", "Succeeded", message, generation),
            ],
        }
        self.fake.set_status(*GITREPOSITORY, namespace, name, _handled(repo, status))

    def _gitrepository(self, run: _Run, repo: Obj) -> None:
        """A tenant GitRepository: the same commit, only its sparse-checkout directories."""
        namespace, name = repo["metadata"]["namespace"], repo["metadata"]["name"]
        spec = repo["spec"]
        generation = repo["metadata"]["generation"]
        previous = (repo.get("status") or {}).get("conditions", [])
        branch = (spec.get("ref") or {}).get("branch", "master")
        problem = ""
        if spec.get("url") != self.url:
            problem = (
                f"failed to checkout and determine revision: unable to clone '{spec.get('url')}'"
            )
        elif branch != self.branch:
            problem = (
                "failed to checkout and determine revision: "
                f"couldn't find remote ref 'refs/heads/{branch}'"
            )
        if problem:
            status = {
                "observedGeneration": generation,
                "conditions": [
                    _condition(
                        previous, "Ready", "False", "GitOperationFailed", problem, generation
                    )
                ],
            }
            self.fake.set_status(*GITREPOSITORY, namespace, name, _handled(repo, status))
            run.artifacts.pop((namespace, name), None)
            return
        target = run.root / "sources" / namespace / name
        full = run.root / "repo"
        sparse = spec.get("sparseCheckout") or []
        shutil.rmtree(target, ignore_errors=True)
        if not sparse:
            shutil.copytree(full, target)
        for directory in sparse:
            if (full / directory).is_dir():
                shutil.copytree(full / directory, target / directory)
        target.mkdir(parents=True, exist_ok=True)
        run.artifacts[(namespace, name)] = target
        self._source_ready(run, repo)

    def _artifact(self, run: _Run, namespace: str, name: str) -> Path | None:
        """The GitRepository's artifact for this commit (source-controller reconciles every
        GitRepository on its own, whichever Kustomization applied it)."""
        if (namespace, name) not in run.artifacts:
            repo = self.fake.get(*GITREPOSITORY, namespace, name)
            if repo is not None and not repo["metadata"].get("deletionTimestamp"):
                self._gitrepository(run, repo)
        return run.artifacts.get((namespace, name))

    def _cluster_dir(self, root: Path) -> Path:
        clusters = sorted(p for p in (root / "clusters").iterdir() if p.is_dir())
        if self.cluster is not None:
            return root / "clusters" / self.cluster
        if len(clusters) != 1:
            names = [p.name for p in clusters]
            raise ValueError(f"clusters/ holds {names}: pass cluster= to FluxStandIn")
        return clusters[0]

    # ---- kustomize-controller ------------------------------------------------------------

    def _kustomizations(self, run: _Run, root: Obj) -> None:
        """Reconcile the root Kustomization, then every Kustomization in the cluster (each
        reconciles on its own, whether or not its parent applied this time), until nothing
        changes: one that waits for a dependency goes again in the next round."""
        pending: list[Obj] = [root]
        done: set[tuple[str, str]] = set()
        for _ in range(10):
            waiting: list[Obj] = []
            progressed = False
            for ks in pending:
                ident = (ks["metadata"]["namespace"], ks["metadata"]["name"])
                if ident in done:
                    continue
                outcome = self._kustomization(run, ks)
                if outcome == "waiting":
                    waiting.append(ks)
                    continue
                done.add(ident)
                progressed = True
                if isinstance(outcome, list):
                    waiting += [o for o in outcome if _key(o) == KUSTOMIZATION]
            waiting += [
                ks
                for ks in self.fake.items(*KUSTOMIZATION)
                if (ks["metadata"]["namespace"], ks["metadata"]["name"]) not in done
            ]
            pending = waiting
            if not pending or not progressed:
                break
        run.releases = [
            hr
            for hr in self.fake.items(*HELMRELEASE)
            if not hr["metadata"].get("deletionTimestamp")
        ]

    def _kustomization(self, run: _Run, applied: Obj) -> list[Obj] | str | None:
        """Build, apply and prune one Kustomization. Returns what it applied, "waiting" for a
        dependency, or None when it failed."""
        ks = self.fake.get(
            *KUSTOMIZATION, applied["metadata"]["namespace"], applied["metadata"]["name"]
        )
        if ks is None or ks["spec"].get("suspend") or ks["metadata"].get("deletionTimestamp"):
            return None
        name, namespace = ks["metadata"]["name"], ks["metadata"]["namespace"]
        generation = ks["metadata"]["generation"]
        status = copy.deepcopy(ks.get("status") or {})
        previous = status.get("conditions", [])
        source_ref = ks["spec"]["sourceRef"]
        source_ns = source_ref.get("namespace") or namespace
        try:
            if self.no_cross_namespace_refs and source_ns != namespace:
                raise _Refused(
                    "AccessDenied",
                    f"can't access '{source_ref['kind']}/{source_ns}/{source_ref['name']}', "
                    "cross-namespace references have been blocked",
                    stalled=True,
                )
            artifact = self._artifact(run, source_ns, source_ref["name"])
            if artifact is None:
                raise _Refused(
                    "ArtifactFailed",
                    f"Source '{source_ref['kind']}/{source_ns}/{source_ref['name']}' not found"
                    " or not ready",
                )
            self._check_dependencies(run, ks)
            identities = self._decryption_identities(ks)
            path = artifact / ks["spec"]["path"]
            objects = self._build(path, root=artifact)
            target = ks["spec"].get("targetNamespace")
            for obj in objects:
                if target and _key(obj)[1] not in CLUSTER_SCOPED:
                    obj["metadata"]["namespace"] = target
            if ks["spec"].get("decryption"):
                objects = [_decrypted(obj, identities) for obj in objects]
            _refuse_encrypted_secrets(objects)
            account = self._account(namespace, ks["spec"].get("serviceAccountName"))
            labels = {KS_NAME: name, KS_NAMESPACE: namespace}
            for obj in objects:
                obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), **labels}
                if _key(obj) == HELMRELEASE:
                    finalizers = obj["metadata"].setdefault("finalizers", [])
                    if FINALIZER not in finalizers:
                        finalizers.append(FINALIZER)
                self._authorize(account, "patch", obj)
            applied_objects = self._apply_staged(objects)
            self._prune(run, ks, applied_objects, account=account)
            # kube-controller-manager runs beside Flux: claims just applied get bound,
            # claims just pruned lose their protection finalizer when no pod uses them.
            self.workloads.volumes.sync()
        except _Refused as refused:
            if refused.reason == "DependencyNotReady":
                self._ks_failed(ks, run, status, refused)
                return "waiting"
            self._ks_failed(ks, run, status, refused)
            return None
        revision = run.revision
        status |= {
            "observedGeneration": generation,
            "lastAppliedRevision": revision,
            "lastAttemptedRevision": revision,
            "inventory": {
                "entries": sorted(
                    (
                        {"id": inventory_id(o), "v": o["apiVersion"].rpartition("/")[2]}
                        for o in applied_objects
                    ),
                    key=lambda e: e["id"],
                )
            },
            "conditions": [
                _condition(
                    previous,
                    "Ready",
                    "True",
                    "ReconciliationSucceeded",
                    f"Applied revision: {revision}",
                    generation,
                )
            ],
        }
        self.fake.set_status(*KUSTOMIZATION, namespace, name, _handled(ks, status))
        self._event(
            ks,
            "info",
            "ReconciliationSucceeded",
            f"Applied revision: {revision}",
            revision,
            "kustomize-controller",
        )
        for obj in applied_objects:
            if _key(obj) == GITREPOSITORY and (
                obj["metadata"]["namespace"],
                obj["metadata"]["name"],
            ) != (FLUX_NAMESPACE, SOURCE):
                self._gitrepository(run, obj)
        return applied_objects

    def _ks_failed(self, ks: Obj, run: _Run, status: Obj, refused: _Refused) -> None:
        generation = ks["metadata"]["generation"]
        previous = status.get("conditions", [])
        conditions = [
            _condition(previous, "Ready", "False", refused.reason, refused.message, generation)
        ]
        if refused.stalled:
            conditions.append(
                _condition(previous, "Stalled", "True", refused.reason, refused.message, generation)
            )
        status |= {
            "observedGeneration": generation,
            "lastAttemptedRevision": run.revision,
            "conditions": conditions,
        }
        name, namespace = ks["metadata"]["name"], ks["metadata"]["namespace"]
        self.fake.set_status(*KUSTOMIZATION, namespace, name, _handled(ks, status))
        if refused.reason != "DependencyNotReady":
            self._event(
                ks, "error", refused.reason, refused.message, run.revision, "kustomize-controller"
            )

    def _decryption_identities(self, ks: Obj) -> list[str]:
        """The age identities of the decryption Secret (``Decryptor.ImportKeys``)."""
        decryption = ks["spec"].get("decryption") or {}
        secret_name = (decryption.get("secretRef") or {}).get("name")
        if decryption.get("provider") != "sops" or not secret_name:
            return []
        namespace = ks["metadata"]["namespace"]
        secret = self.fake.get(*SECRET, namespace, secret_name)
        if secret is None:
            raise _Refused("BuildFailed", f'secrets "{secret_name}" not found')
        identities: list[str] = []
        for key, value in (secret.get("data") or {}).items():
            if not key.endswith(AGE_KEY_SUFFIX) or key == AGE_KEY_SUFFIX:
                continue
            try:
                identities += sops.parse_identities(base64.b64decode(value).decode())
            except (sops.SopsError, UnicodeDecodeError) as exc:
                raise _Refused(
                    "BuildFailed",
                    f"failed to import '{key}' data from sops decryption Secret "
                    f"'{namespace}/{secret_name}': failed to parse and add to age identities: "
                    f"{exc}",
                ) from exc
        return identities

    def _check_dependencies(self, run: _Run, ks: Obj) -> None:
        for dependency in ks["spec"].get("dependsOn") or []:
            namespace = dependency.get("namespace") or ks["metadata"]["namespace"]
            dep = self.fake.get(*KUSTOMIZATION, namespace, dependency["name"])
            ident = f"{namespace}/{dependency['name']}"
            if dep is None:
                raise _Refused(
                    "DependencyNotReady",
                    f"dependency '{ident}' not found: kustomizations.kustomize.toolkit.fluxcd.io"
                    f' "{dependency["name"]}" not found',
                )
            dep_status = dep.get("status") or {}
            ready = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in dep_status.get("conditions") or []
            )
            current = dep_status.get("observedGeneration") == dep["metadata"]["generation"]
            same_source = dep["spec"]["sourceRef"] == ks["spec"]["sourceRef"]
            if not (ready and current) or (
                same_source and dep_status.get("lastAppliedRevision") != run.revision
            ):
                raise _Refused("DependencyNotReady", f"dependency '{ident}' is not ready")

    def _build(self, path: Path, *, root: Path) -> list[Obj]:
        """``kubectl kustomize`` of a directory; without a kustomization file, one is
        generated listing every YAML file below it (fluxcd/pkg kustomize generator)."""
        if not path.is_dir():
            shown = path.relative_to(root) if path.is_relative_to(root) else path
            raise _Refused(
                "BuildFailed",
                f"kustomization path not found: stat {shown}: no such file or directory",
            )
        names = ("kustomization.yaml", "kustomization.yml", "Kustomization")
        if not any((path / n).is_file() for n in names):
            resources = _scan_manifests(path)
            (path / "kustomization.yaml").write_text(
                json.dumps(
                    {
                        "apiVersion": "kustomize.config.k8s.io/v1beta1",
                        "kind": "Kustomization",
                        "resources": resources,
                    }
                ),
                encoding="utf-8",
            )
        digest = _tree_digest(path)
        if digest not in self._builds:
            result = subprocess.run(
                [self.kubectl, "kustomize", str(path)],
                capture_output=True,
                text=True,
                timeout=TOOL_TIMEOUT,
                check=False,
            )
            if result.returncode != 0:
                detail = result.stderr.strip().replace(f"{root}/", "")
                raise _Refused("BuildFailed", f"kustomize build failed: {detail}")
            self._builds[digest] = [
                json.loads(json.dumps(d)) for d in yamlio.load_all(result.stdout)
            ]
        return copy.deepcopy(self._builds[digest])

    def _apply_staged(self, objects: list[Obj]) -> list[Obj]:
        """Namespaces first, then the rest; each stage dry-run before anything is applied."""
        stages = [
            [o for o in objects if _key(o) == NAMESPACE],
            [o for o in objects if _key(o) != NAMESPACE],
        ]
        applied: list[Obj] = []
        for stage in stages:
            for obj in stage:
                try:
                    self._apply_merged(obj, recreate_deleting=True, dry_run=True)
                except ApiError as exc:
                    reason = exc.body.get("reason")
                    raise _Refused(
                        "ReconciliationFailed",
                        f"{_display(obj)} dry-run failed{f' ({reason})' if reason else ''}: "
                        f"{exc.body['message']}",
                    ) from exc
            for obj in stage:
                applied.append(self._apply_merged(obj, recreate_deleting=True))
        return applied

    def _apply_namespace(self, name: str) -> None:
        if self.fake.get(*NAMESPACE, None, name) is None:
            self.fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def _apply_merged(
        self, obj: Obj, *, recreate_deleting: bool = False, dry_run: bool = False
    ) -> Obj:
        """Apply, keeping ``reconcile.fluxcd.io/*`` annotations others set (server-side apply)."""
        api_version, kind, namespace, name = _ref(obj)
        existing = self.fake.get(api_version, kind, namespace or None, name)
        if (
            existing is not None
            and recreate_deleting
            and existing["metadata"].get("deletionTimestamp")
            and (api_version, kind) != PVC  # a claim being deleted is patched, and stays so
        ):
            if dry_run:
                existing = None
            else:
                self._delete(existing, hold=False)
                existing = None
        if existing is not None and (api_version, kind) == PVC:
            obj = _keep_claim_fields(obj, existing)
        if existing is not None:
            kept = {
                k: v
                for k, v in (existing["metadata"].get("annotations") or {}).items()
                if k.startswith("reconcile.fluxcd.io/")
            }
            if kept:
                obj = copy.deepcopy(obj)
                obj["metadata"]["annotations"] = {
                    **kept,
                    **(obj["metadata"].get("annotations") or {}),
                }
        if dry_run:
            return self.fake.apply(obj, dry_run=True)
        return self.fake.apply(obj)

    def _prune(
        self, run: _Run, ks: Obj, applied: list[Obj], *, account: tuple[str, str] | None
    ) -> None:
        name, namespace = ks["metadata"]["name"], ks["metadata"]["namespace"]
        desired = {_ref(o) for o in applied}
        entries = ((ks.get("status") or {}).get("inventory") or {}).get("entries", [])
        candidates = {_from_inventory(e) for e in entries}
        keys = {(ref[0], ref[1]) for ref in candidates} | set(TENANT_KINDS)
        for key in keys:
            for obj in self.fake.items(*key):
                labels = obj["metadata"].get("labels") or {}
                if labels.get(KS_NAME) == name and labels.get(KS_NAMESPACE) == namespace:
                    candidates.add(_ref(obj))
        gone = sorted(
            candidates - desired, key=lambda r: (r[1] == "Namespace", r[1] != "HelmRelease")
        )
        for api_version, kind, obj_namespace, obj_name in gone:
            found = self.fake.get(api_version, kind, obj_namespace or None, obj_name)
            if found is None or _keeps_out_of_prune(found, name=name, namespace=namespace):
                continue
            self._authorize(account, "delete", found)
            self._delete(found, hold=run.hold_deletes)

    def _delete(self, obj: Obj, *, hold: bool) -> None:
        api_version, kind, namespace, name = _ref(obj)
        if (api_version, kind) == KUSTOMIZATION:
            self._finalize(obj, hold=hold)
        if (api_version, kind) != HELMRELEASE:
            if obj["metadata"].get("finalizers"):
                # a DELETE of an object with finalizers only marks it (its controller lets
                # it go: a claim's pvc-protection, see kubecontrollers.Volumes)
                if not obj["metadata"].get("deletionTimestamp"):
                    self.fake.delete(api_version, kind, namespace or None, name, graceful=True)
                return
            self.fake.delete(api_version, kind, namespace or None, name)
            return
        if not obj["metadata"].get("deletionTimestamp"):
            self.fake.delete(api_version, kind, namespace, name, graceful=True)
        if hold:
            return
        release, target = _release_name(obj), _target_namespace(obj)
        self._remove_workloads(target, release, keep=set())
        self.fake.delete(api_version, kind, namespace, name)

    def _finalize(self, ks: Obj, *, hold: bool) -> None:
        """kustomize-controller's ``finalize`` of a deleted Kustomization
        (``finalizerShouldDeleteResources``, kustomization_deletion_policy_test.go): unless
        suspended or with an empty inventory, its objects are deleted when
        ``spec.deletionPolicy`` is Delete or WaitForTermination, or MirrorPrune (the default)
        with ``prune: true``; with the prune exclusions (``_keeps_out_of_prune``) and as the
        Kustomization's account (an object it may not delete stays: the controller logs it
        and lets the Kustomization go)."""
        spec = ks.get("spec") or {}
        policy = spec.get("deletionPolicy") or "MirrorPrune"
        entries = ((ks.get("status") or {}).get("inventory") or {}).get("entries") or []
        wanted = {"MirrorPrune": bool(spec.get("prune")), "Delete": True}
        wanted["WaitForTermination"] = True
        if spec.get("suspend") or not entries or not wanted.get(policy, False):
            return
        name, namespace = ks["metadata"]["name"], ks["metadata"]["namespace"]
        account = self._account(namespace, spec.get("serviceAccountName"))
        refs = sorted(
            {_from_inventory(e) for e in entries},
            key=lambda r: (r[1] == "Namespace", r[1] != "HelmRelease", r),
        )
        for api_version, kind, obj_namespace, obj_name in refs:
            found = self.fake.get(api_version, kind, obj_namespace or None, obj_name)
            if found is None or _keeps_out_of_prune(found, name=name, namespace=namespace):
                continue
            try:
                self._authorize(account, "delete", found)
            except _Refused:
                continue
            self._delete(found, hold=hold)
        self.workloads.volumes.sync()

    # ---- impersonation -------------------------------------------------------------------

    def _account(self, namespace: str, name: str | None) -> tuple[str, str] | None:
        """Who a Kustomization/HelmRelease acts as; None: the controller itself."""
        if name:
            return (namespace, name)
        if self.default_service_account is not None:
            return (namespace, self.default_service_account)
        return None

    def _authorize(self, account: tuple[str, str] | None, verb: str, obj: Obj) -> None:
        if account is None or account in CONTROLLERS:
            return
        api_version, kind, namespace, name = _ref(obj)
        group = api_version.rpartition("/")[0]
        user = f"system:serviceaccount:{account[0]}:{account[1]}"
        where = (
            "at the cluster scope"
            if kind in CLUSTER_SCOPED or not namespace
            else f'in the namespace "{namespace}"'
        )
        denied = _Refused(
            "ReconciliationFailed",
            f"{kind}/{namespace + '/' if namespace else ''}{name} dry-run failed (Forbidden): "
            f'{_resource(api_version, kind)} "{name}" is forbidden: User "{user}" cannot '
            f'{verb} resource "{_plural(kind)}" in API group "{group}" {where}',
        )
        if kind in CLUSTER_SCOPED or not namespace:
            raise denied
        roles = set()
        for binding in self.fake.items(*ROLEBINDING, namespace):
            for subject in binding.get("subjects") or []:
                if (
                    subject.get("kind") == "ServiceAccount"
                    and subject.get("name") == account[1]
                    and (subject.get("namespace") or namespace) == account[0]
                ):
                    roles.add(binding["roleRef"]["name"])
        if "cluster-admin" in roles:
            return
        if roles & {"admin", "edit"} and kind not in READ_ONLY_FOR_ADMIN:
            if kind in ("RoleBinding", "Role") and "admin" not in roles:
                raise denied
            return
        raise denied

    # ---- helm-controller -----------------------------------------------------------------

    def _reconcile_release(self, run: _Run, applied: Obj) -> None:
        api_version, kind, namespace, name = _ref(applied)
        hr = self.fake.get(api_version, kind, namespace, name)
        if hr is None or hr["metadata"].get("deletionTimestamp") or hr["spec"].get("suspend"):
            return
        scenario = run.scenario.get(name, "success")
        generation = hr["metadata"]["generation"]
        prev = hr.get("status") or {}
        previous = prev.get("conditions", [])
        release, target = _release_name(hr), _target_namespace(hr)
        try:
            chart = self._chart(run, hr)
        except _Refused as refused:
            conditions = [
                _condition(previous, "Ready", "False", refused.reason, refused.message, generation)
            ]
            if refused.stalled:
                conditions.append(
                    _condition(
                        previous, "Stalled", "True", refused.reason, refused.message, generation
                    )
                )
            status = {**prev, "observedGeneration": generation, "conditions": conditions}
            self.fake.set_status(*HELMRELEASE, namespace, name, _handled(hr, status, helm=True))
            self._event(hr, "error", refused.reason, refused.message, "", "helm-controller")
            return
        values = hr["spec"].get("values") or {}
        digest = config_digest(values)
        history = [dict(h) for h in prev.get("history") or []]
        deployed = next((h for h in history if h["status"] == "deployed"), None)
        account = self._account(namespace, hr["spec"].get("serviceAccountName"))
        if scenario == "failed-upgrade" and deployed is None:
            history = self._release(history, release, target, chart, digest, "deployed")
            self._apply_workloads(run, hr, chart, health="ok", account=account)
            deployed = history[0]
        action = "install" if deployed is None else "upgrade"
        conditions: list[Obj] = []
        ref = f"{target}/{release}"
        with_chart = f"with chart {chart.name}@{chart.version}"
        status: Obj = {
            "observedGeneration": generation,
            "helmChart": f"{self._chart_namespace(hr)}/{namespace}-{name}",
            "lastAttemptedGeneration": generation,
            "lastAttemptedReleaseAction": action,
            "lastAttemptedRevision": chart.version,
            "lastAttemptedConfigDigest": digest,
            "storageNamespace": target,
        }

        def cond(type_: str, state: str, reason: str, message: str) -> None:
            conditions.append(_condition(previous, type_, state, reason, message, generation))

        changed = deployed is None or (deployed["chartVersion"], deployed["configDigest"]) != (
            chart.version,
            digest,
        )
        refusal = ""
        if scenario == "success" and changed:
            refusal = self._admit_workloads(hr, chart, account=account)
            if refusal:
                scenario = "refused"
        if scenario == "progressing":
            message = f"Running '{action}' action with timeout of 5m0s"
            status["observedGeneration"] = min(prev.get("observedGeneration", -1), generation - 1)
            cond("Reconciling", "True", "Progressing", message)
            cond("Ready", "Unknown", "Progressing", message)
            conditions += [c for c in previous if c["type"] in ("Released", "Remediated")]
        elif scenario in ("stalled", "refused"):
            verb = action.capitalize()
            failed = f"Helm {action} failed for release {ref} {with_chart}: {refusal or FAILURE}"
            history = self._release(history, release, target, chart, digest, "failed")
            self.upgrades[(namespace, name)] += 1
            count = 3 if scenario == "stalled" else prev.get(f"{action}Failures", 0) + 1
            status[f"{action}Failures"] = count
            status["failures"] = count
            if scenario == "stalled":
                cond("Stalled", "True", "RetriesExceeded", f"Failed to {action} after 3 attempt(s)")
            cond("Ready", "False", f"{verb}Failed", failed)
            cond("Released", "False", f"{verb}Failed", failed)
            if deployed is None:
                self._remove_workloads(target, release, keep=set())
            else:
                cond("Remediated", "True", "RollbackSucceeded", _rollback(ref, chart, deployed))
            self._event(hr, "error", f"{verb}Failed", failed, chart.version, "helm-controller")
        elif scenario == "failed-upgrade":
            assert deployed is not None
            failed = f"Helm upgrade failed for release {ref} {with_chart}: {FAILURE}"
            again = _reason(previous, "Ready") == "UpgradeFailed"
            count = prev.get("upgradeFailures", 0) + 1 if again else 1
            history = self._release(history, release, target, chart, digest, "failed")
            self.upgrades[(namespace, name)] += 1
            status |= {"upgradeFailures": count, "failures": count}
            cond("Ready", "False", "UpgradeFailed", failed)
            cond("Released", "False", "UpgradeFailed", failed)
            cond("Remediated", "True", "RollbackSucceeded", _rollback(ref, chart, deployed))
            self._event(hr, "error", "UpgradeFailed", failed, chart.version, "helm-controller")
        else:
            if changed:
                history = self._release(history, release, target, chart, digest, "deployed")
                self.upgrades[(namespace, name)] += 1
            current = history[0] if changed else deployed
            assert current is not None
            earlier = [
                h
                for h in history
                if h["version"] < current["version"] and h["status"] in ("deployed", "superseded")
            ]
            reason = "UpgradeSucceeded" if earlier else "InstallSucceeded"
            status["lastAttemptedReleaseAction"] = (
                "install" if reason == "InstallSucceeded" else "upgrade"
            )
            verb = "install" if reason == "InstallSucceeded" else "upgrade"
            message = (
                f"Helm {verb} succeeded for release {ref}.v{current['version']} "
                f"with chart {chart.name}@{current['chartVersion']}"
            )
            cond("Ready", "True", reason, message)
            cond("Released", "True", reason, message)
            if changed:
                self._event(hr, "info", reason, message, chart.version, "helm-controller")
            self._apply_workloads(
                run,
                hr,
                chart,
                health=scenario if scenario in ("crashloop", "oomkilled") else "ok",
                account=account,
            )
        status["history"] = history[:HISTORY_LIMIT]
        status["conditions"] = conditions
        self.fake.set_status(*HELMRELEASE, namespace, name, _handled(hr, status, helm=True))

    def _chart_namespace(self, hr: Obj) -> str:
        spec = hr["spec"]
        ref = (
            spec.get("chartRef")
            or ((spec.get("chart") or {}).get("spec") or {}).get("sourceRef")
            or {}
        )
        return str(ref.get("namespace") or hr["metadata"]["namespace"])

    def _chart(self, run: _Run, hr: Obj) -> _Chart:
        """The chart as source-controller packages it for this release."""
        spec = hr["spec"]
        namespace = hr["metadata"]["namespace"]
        source_ns = self._chart_namespace(hr)
        ref = spec.get("chartRef") or spec["chart"]["spec"]["sourceRef"]
        if self.no_cross_namespace_refs and source_ns != namespace:
            raise _Refused(
                "AccessDenied",
                f"can't access '{ref['kind']}/{source_ns}/{ref['name']}', "
                "cross-namespace references have been blocked",
                stalled=True,
            )
        if spec.get("chartRef"):
            return self._oci_chart(run, source_ns, ref["name"])
        template = spec["chart"]["spec"]
        artifact = self._artifact(run, source_ns, ref["name"])
        if artifact is None:
            raise _Refused(
                "ArtifactFailed",
                f"HelmChart '{source_ns}/{namespace}-{hr['metadata']['name']}' is not ready: "
                f"source '{ref['kind']}/{source_ns}/{ref['name']}' has no artifact",
            )
        path = artifact / template.get("chart", "./charts/generic-app")
        if not (path / "Chart.yaml").is_file():
            raise _Refused(
                "ArtifactFailed",
                f"HelmChart '{source_ns}/{namespace}-{hr['metadata']['name']}' is not ready: "
                f"chart path '{template.get('chart')}' not found in the artifact",
            )
        meta = yamlio.load((path / "Chart.yaml").read_text(encoding="utf-8"))
        version = str(meta["version"])
        if template.get("reconcileStrategy") == "Revision":
            version = f"{version}+{run.commit[:12]}"
        return self._package(run, path, meta, version)

    def _oci_chart(self, run: _Run, namespace: str, name: str) -> _Chart:
        repo = self.fake.get(*OCIREPOSITORY, namespace, name)
        if repo is None:
            raise _Refused("ArtifactFailed", f"OCIRepository '{namespace}/{name}' not found")
        path = run.root / "repo" / "charts" / "generic-app"
        meta = yamlio.load((path / "Chart.yaml").read_text(encoding="utf-8"))
        tag = str((repo["spec"].get("ref") or {}).get("tag", ""))
        if tag != str(meta["version"]):
            raise _Refused(
                "ArtifactFailed",
                f"artifact revision {tag} does not match chart version {meta['version']}",
            )
        digest = _tree_digest(path)
        return self._package(run, path, meta, f"{meta['version']}+{digest[:12]}")

    def _package(self, run: _Run, path: Path, meta: Obj, version: str) -> _Chart:
        packaged = run.root / "charts" / f"{meta['name']}-{version}"
        if not packaged.is_dir():
            shutil.copytree(path, packaged)
            chart_yaml = packaged / "Chart.yaml"
            text = chart_yaml.read_text(encoding="utf-8")
            lines = [
                f"version: {version}" if line.startswith("version:") else line
                for line in text.splitlines()
            ]
            chart_yaml.write_text("\n".join(lines) + "\n", encoding="utf-8")
        app_version = str(meta["appVersion"]) if meta.get("appVersion") else None
        return _Chart(packaged, str(meta["name"]), version, app_version)

    @staticmethod
    def _release(
        history: list[Obj], release: str, target: str, chart: _Chart, digest: str, state: str
    ) -> list[Obj]:
        """Push a Helm release snapshot (newest first); a new deployed one supersedes."""
        version = max((h["version"] for h in history), default=0) + 1
        moment = now()
        first = next((h["firstDeployed"] for h in reversed(history)), moment)
        if state == "deployed":
            for older in history:
                if older["status"] == "deployed":
                    older["status"] = "superseded"
        snapshot: Obj = {
            "name": release,
            "namespace": target,
            "version": version,
            "status": state,
            "chartName": chart.name,
            "chartVersion": chart.version,
            "configDigest": digest,
            "firstDeployed": first,
            "lastDeployed": moment,
            "digest": f"sha256:{_sha256(f'{target}/{release}.v{version}/{digest}')}",
        }
        if chart.app_version:
            snapshot["appVersion"] = chart.app_version
        return [snapshot, *history]

    def _helm_template(self, hr: Obj, chart: _Chart) -> list[Obj]:
        release, target = _release_name(hr), _target_namespace(hr)
        values_text = json.dumps(hr["spec"].get("values") or {}, sort_keys=True)
        digest = _sha256(f"{release}\0{target}\0{_tree_digest(chart.path)}\0{values_text}")
        if digest not in self._renders:
            self._renders[digest] = self._run_helm(hr, chart)
        rendered = copy.deepcopy(self._renders[digest])
        for obj in rendered:
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", target)
            annotations = meta.setdefault("annotations", {})
            annotations |= {RELEASE_NAME: release, RELEASE_NAMESPACE: target}
        return rendered

    def _run_helm(self, hr: Obj, chart: _Chart) -> list[Obj]:
        release, target = _release_name(hr), _target_namespace(hr)
        with tempfile.TemporaryDirectory(prefix="fluxstandin-values-") as tmp:
            values = Path(tmp) / "values.json"
            values.write_text(json.dumps(hr["spec"].get("values") or {}), "utf-8")
            result = subprocess.run(
                [self.helm, "template", release, str(chart.path), "-n", target, "-f", str(values)],
                capture_output=True,
                text=True,
                timeout=TOOL_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"helm template {release} failed: {result.stderr.strip()}")
        return [json.loads(json.dumps(d)) for d in yamlio.load_all(result.stdout)]

    def _admit_workloads(self, hr: Obj, chart: _Chart, *, account: tuple[str, str] | None) -> str:
        """What the API server would say to the release's objects ("" when all pass)."""
        for obj in self._helm_template(hr, chart):
            try:
                self._authorize(account, "create", obj)
                self.fake.apply(obj, dry_run=True)
            except _Refused as refused:
                return refused.message.split(": ", 1)[1]
            except ApiError as exc:
                return str(exc.body["message"])
        return ""

    def _apply_workloads(
        self, run: _Run, hr: Obj, chart: _Chart, *, health: str, account: tuple[str, str] | None
    ) -> None:
        release, target = _release_name(hr), _target_namespace(hr)
        rendered = self._helm_template(hr, chart)
        self._remove_workloads(target, release, keep={_ref(o) for o in rendered})
        autoscaled = {o["spec"]["scaleTargetRef"]["name"] for o in rendered if _key(o) == HPA}
        deployments = []
        for obj in rendered:
            self._authorize(account, "create", obj)
            if _key(obj) == DEPLOYMENT and _ref(obj)[3] in autoscaled:
                obj = _keep_replicas(obj, self.fake.get(*DEPLOYMENT, target, _ref(obj)[3]))
            stored = self.fake.apply(obj)
            if _key(stored) == DEPLOYMENT:
                deployments.append(stored)
        # the controllers act once everything is applied (an autoscaler comes after its
        # Deployment in helm's install order)
        for stored in deployments:
            self.workloads.roll(stored, release=release, health=health)

    def _remove_workloads(self, namespace: str, release: str, *, keep: set[Any]) -> None:
        for key in WORKLOAD_KINDS:
            for obj in self.fake.items(*key, namespace):
                annotations = obj["metadata"].get("annotations") or {}
                if annotations.get(RELEASE_NAME) != release or _ref(obj) in keep:
                    continue
                if key == DEPLOYMENT:
                    for pod in self.workloads.pods_of(obj):
                        self.fake.delete(*POD, namespace, pod["metadata"]["name"])
                self.fake.delete(*key, namespace, obj["metadata"]["name"])

    # ---- notification-controller ---------------------------------------------------------

    def _event(
        self, obj: Obj, severity: str, reason: str, message: str, revision: str, controller: str
    ) -> None:
        api_version, kind, namespace, name = _ref(obj)
        self.events.append(
            Event(
                kind, namespace, name, api_version, severity, reason, message, revision, controller
            )
        )

    def alerts_for(self, event: Event) -> list[Obj]:
        """The Alerts notification-controller would dispatch ``event`` to."""
        found = []
        for alert in self.fake.items(*ALERT):
            spec = alert["spec"]
            if spec.get("suspend"):
                continue
            for source in spec.get("eventSources") or []:
                namespace = source.get("namespace") or alert["metadata"]["namespace"]
                if event.namespace != namespace or event.kind != source.get("kind"):
                    continue
                severity = spec.get("eventSeverity", "info")
                if event.severity != severity and severity != "info":
                    continue
                if source.get("name") != "*" and source.get("name") != event.name:
                    continue
                found.append(alert)
                break
        return found

    def deliver(self, post: Callable[[str, dict[str, str], bytes], Any]) -> int:
        """Send the recorded events to their Alerts' Providers; returns how many were sent.

        ``post(address, headers, body)`` stands for the HTTP request. Refusals and missing
        Providers or Secrets are kept in ``dispatch_errors``, as the controller logs them.
        """
        sent = 0
        events, self.events = self.events, []
        for event in events:
            for alert in self.alerts_for(event):
                alert_ns = alert["metadata"]["namespace"]
                alert_name = alert["metadata"]["name"]
                if self.no_cross_namespace_refs and event.namespace != alert_ns:
                    self.dispatch_errors.append(
                        f"alert '{alert_ns}/{alert_name}' can't process event from "
                        f"'{event.kind}/{event.namespace}/{event.name}', cross-namespace "
                        "references have been blocked"
                    )
                    continue
                provider = self.fake.get(*PROVIDER, alert_ns, alert["spec"]["providerRef"]["name"])
                if provider is None:
                    self.dispatch_errors.append(
                        f"failed to read provider for {alert_ns}/{alert_name}"
                    )
                    continue
                body = json.dumps(event.payload()).encode()
                headers = {"Content-Type": "application/json"}
                secret_ref = (provider["spec"].get("secretRef") or {}).get("name")
                if provider["spec"]["type"] == "generic-hmac":
                    secret = self.fake.get(*SECRET, alert_ns, secret_ref) if secret_ref else None
                    token = _secret_value(secret, "token")
                    if token is None:
                        self.dispatch_errors.append(
                            f"failed to get secret '{alert_ns}/{secret_ref}' for provider "
                            f"'{provider['metadata']['name']}'"
                        )
                        continue
                    signature = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
                    headers["X-Signature"] = f"sha256={signature}"
                post(provider["spec"]["address"], headers, body)
                self.delivered.append((provider["spec"]["address"], event.payload()))
                sent += 1
        return sent


# ---- pure helpers -------------------------------------------------------------------------


def _keeps_out_of_prune(obj: Obj, *, name: str, namespace: str) -> bool:
    """kustomize-controller's prune skips an object another Kustomization took over (its
    owner labels changed) or one marked ``prune: disabled`` or ``reconcile: disabled``
    (``prune()``: ssa DeleteAll with exclusions; ``kustomization_deletion_policy_test.go``:
    "ownership changed", "pruning disabled", "reconciliation disabled" are skipped)."""
    meta = obj["metadata"]
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    if (labels.get(KS_NAME), labels.get(KS_NAMESPACE)) != (name, namespace):
        return True
    return any(
        marks.get(f"kustomize.toolkit.fluxcd.io/{key}") == "disabled"
        for marks in (labels, annotations)
        for key in ("prune", "reconcile")
    )


def _keep_claim_fields(obj: Obj, existing: Obj) -> Obj:
    """A claim re-applied from Git keeps what the cluster filled in and Git never said:
    server-side apply leaves fields owned by other managers alone (kubernetes.io docs,
    "Server-Side Apply", field management). Those are spec.volumeName (the PV controller),
    storageClassName and volumeMode when Git omits them (DefaultStorageClass, defaulting) and
    the controllers' annotations; the API server would refuse the claim without them (its
    spec is immutable)."""
    merged = copy.deepcopy(obj)
    spec = merged.setdefault("spec", {})
    for field_name in ("volumeName", "storageClassName", "volumeMode"):
        if field_name not in spec and field_name in (existing.get("spec") or {}):
            spec[field_name] = existing["spec"][field_name]
    annotations = existing["metadata"].get("annotations") or {}
    kept = {k: v for k, v in annotations.items() if k in kubecontrollers.CONTROLLER_ANNOTATIONS}
    if kept:
        meta = merged.setdefault("metadata", {})
        meta["annotations"] = {**kept, **(meta.get("annotations") or {})}
    return merged


def _scan_manifests(base: Path) -> list[str]:
    """Every .yaml/.yml file below ``base`` (a folder with its own kustomization file as a
    whole), as fluxcd/pkg's ``scanManifests`` lists them for the generated kustomization."""
    found: list[str] = []

    def walk(folder: Path) -> None:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir():
                if any(
                    (entry / n).is_file()
                    for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")
                ):
                    found.append(entry.relative_to(base).as_posix())
                else:
                    walk(entry)
            elif entry.suffix in (".yaml", ".yml"):
                found.append(entry.relative_to(base).as_posix())

    walk(base)
    return found


def _decrypted(obj: Obj, identities: list[str]) -> Obj:
    """One built object through ``Decryptor.DecryptResource`` (SOPS-encrypted objects only)."""
    annotations = obj["metadata"].get("annotations") or {}
    if not sops.is_encrypted(obj) or annotations.get(DECRYPT_ANNOTATION, "").lower() == (
        "disabled"
    ):
        return obj
    meta = obj["metadata"]
    where = (
        f"decryption failed for '{meta['name']}': failed to decrypt and format "
        f"'{meta.get('namespace', '')}/{meta['name']}' {obj['kind']} data"
    )
    try:
        opened = sops.decrypt(obj, identities, verify_mac=False)
    except sops.NoKey as exc:
        detail = "Error getting data key: 0 successful groups required, got 0"
        raise _Refused("BuildFailed", f"{where}: cannot get sops data key: {detail}") from exc
    except sops.SopsError as exc:
        cause = (
            "Input string <redacted> does not match sops' data format"
            if "well-formed" in str(exc) or "expected an encrypted value" in str(exc)
            else "Could not decrypt with AES_GCM: cipher: message authentication failed"
        )
        raise _Refused(
            "BuildFailed",
            f"{where}: error decrypting sops tree: Error walking tree: Could not decrypt "
            f"value: {cause}",
        ) from exc
    return opened.document


def _refuse_encrypted_secrets(objects: list[Obj]) -> None:
    """kustomize-controller's apply: an encrypted v1 Secret stops everything."""
    for obj in objects:
        annotations = obj["metadata"].get("annotations") or {}
        disabled = annotations.get(DECRYPT_ANNOTATION, "").lower() == "disabled"
        if _key(obj) == SECRET and "sops" in obj and not disabled:
            raise _Refused(
                "ReconciliationFailed",
                f"{_display(obj)} is SOPS encrypted, configuring decryption is required for "
                "this secret to be reconciled",
            )


def _secret_value(secret: Obj | None, key: str) -> str | None:
    if secret is None:
        return None
    if key in (secret.get("stringData") or {}):
        return str(secret["stringData"][key])
    data = (secret.get("data") or {}).get(key)
    if data is None:
        return None
    return base64.b64decode(data).decode()


def _release_name(hr: Obj) -> str:
    spec = hr["spec"]
    if spec.get("releaseName"):
        return str(spec["releaseName"])
    prefix = f"{spec['targetNamespace']}-" if spec.get("targetNamespace") else ""
    return f"{prefix}{hr['metadata']['name']}"


def _target_namespace(hr: Obj) -> str:
    return str(hr["spec"].get("targetNamespace") or hr["metadata"]["namespace"])


def _reason(conditions: list[Obj], type_: str) -> str:
    found = next((c for c in conditions if c.get("type") == type_), None)
    return str(found["reason"]) if found else ""


def _rollback(ref: str, chart: _Chart, deployed: Obj) -> str:
    return (
        f"Helm rollback to previous release {ref}.v{deployed['version']} with chart "
        f"{chart.name}@{deployed['chartVersion']} succeeded"
    )


def _keep_replicas(rendered: Obj, live: Obj | None) -> Obj:
    """A Deployment the chart leaves to its autoscaler (no spec.replicas) keeps the replicas the
    autoscaler set: helm's three-way merge leaves a field neither manifest sets as the cluster
    has it. (Not modelled: the upgrade that drops replicas, where the API server's default of 1
    shows until the autoscaler raises it again.)"""
    replicas = ((live or {}).get("spec") or {}).get("replicas")
    if "replicas" in rendered["spec"] or replicas is None:
        return rendered
    return {**rendered, "spec": {**rendered["spec"], "replicas": replicas}}


def _handled(obj: Obj, status: Obj, *, helm: bool = False) -> Obj:
    """Record reconcile requests this reconcile answered (lastHandled*At)."""
    annotations = obj["metadata"].get("annotations") or {}
    if REQUESTED_AT in annotations:
        status["lastHandledReconcileAt"] = annotations[REQUESTED_AT]
    if helm:
        for name, target in (("forceAt", "lastHandledForceAt"), ("resetAt", "lastHandledResetAt")):
            if f"reconcile.fluxcd.io/{name}" in annotations:
                status[target] = annotations[f"reconcile.fluxcd.io/{name}"]
    return status


def _tree_digest(path: Path) -> str:
    """sha256 over the relative names and contents of every file below ``path``."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()
