"""Plays Flux against a ``FakeKube`` for a GitOps repository written by gitops-bridge (test code).

Neither Kubernetes nor Flux can run here. ``FluxStandIn.reconcile(commit)`` does, for one
commit, what Flux's controllers and Kubernetes' own would do, with the real tools:

- source-controller: exports the commit (``git archive``) and publishes the GitRepository
  ``flux-system/flux-system`` (artifact revision ``<branch>@sha1:<commit>``, Ready).
- kustomize-controller: the ``flux-system`` Kustomization applies ``clusters/<cluster>/``;
  each Kustomization found there is built with ``kubectl kustomize <spec.path>``, every
  object is applied (labelled ``kustomize.toolkit.fluxcd.io/name|namespace``; annotations
  ``reconcile.fluxcd.io/*`` set by others survive, as with server-side apply), objects that
  are gone are pruned (those in the previous ``status.inventory``, those carrying the
  Kustomization's labels, and for a Kustomization other than ``flux-system`` anything
  labelled ``app.kubernetes.io/managed-by: gitops-bridge``), then the status
  (``lastAppliedRevision``, inventory, Ready ``ReconciliationSucceeded``) is written. A
  failing build is Ready False ``BuildFailed`` and applies nothing.
- helm-controller: each HelmRelease gets the ``finalizers.fluxcd.io`` finalizer, is rendered
  with ``helm template <release> <chart> -n <ns> -f <values>``, its Deployment/Service/
  ConfigMap are applied (annotated ``meta.helm.sh/release-name|namespace``) and its status
  is written per scenario (below). A pruned HelmRelease is deleted gracefully (a
  deletionTimestamp first), then uninstalled; ``hold_deletes=True`` leaves it in that
  deleting state, workloads included, until the next reconcile.
- Deployment controller, scheduler and kubelet: one Pod per replica named
  ``<deployment>-<pod-template-hash>-<5 chars>``; pods of an older template are replaced;
  Deployment status; PodMetrics; a few log lines per container.

Scenarios, keyed by HelmRelease name (default ``success``): ``success``, ``failed-upgrade``
(the upgrade fails and is rolled back: the pods keep the previous image; on a release never
installed it is installed first), ``crashloop`` (released, but the first container is in
CrashLoopBackOff), ``stalled`` (retries exhausted: install, or upgrade when a release
exists) and ``progressing`` (an action still running). Chart versions follow Flux: with
``reconcileStrategy: Revision`` a chart from Git is ``<Chart.yaml version>+<commit[:12]>``, so
every new commit upgrades every release (no pod changes unless the rendering changed).

Not modelled: dependsOn, health checks/wait, post-build substitution, sops, valuesFrom,
HelmRepository/OCIRepository charts (a ``chartRef`` renders ``charts/generic-app`` of the
commit), drift detection, tests, ReplicaSet objects, ResourceQuota status, Events, intervals
(nothing happens between ``reconcile`` calls). A chart that ``helm template`` rejects raises
RuntimeError instead of becoming an InstallFailed status.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitops_bridge.render import yamlio
from tests import kubecontrollers
from tests.kubefake import FakeKube, now

Obj = dict[str, Any]
Key = tuple[str, str]

HELMRELEASE: Key = ("helm.toolkit.fluxcd.io/v2", "HelmRelease")
KUSTOMIZATION: Key = ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
GITREPOSITORY: Key = ("source.toolkit.fluxcd.io/v1", "GitRepository")
NAMESPACE: Key = ("v1", "Namespace")
DEPLOYMENT: Key = ("apps/v1", "Deployment")
POD: Key = ("v1", "Pod")
FLUX_NAMESPACE = "flux-system"
SOURCE = "flux-system"
FINALIZER = "finalizers.fluxcd.io"
MANAGED_BY = "app.kubernetes.io/managed-by"
KS_NAME = "kustomize.toolkit.fluxcd.io/name"
KS_NAMESPACE = "kustomize.toolkit.fluxcd.io/namespace"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
SCENARIOS = frozenset({"success", "failed-upgrade", "crashloop", "stalled", "progressing"})
# Kinds gitops-bridge writes under tenants/ (checked for pruning besides the inventory).
TENANT_KINDS: tuple[Key, ...] = (
    NAMESPACE,
    ("v1", "ResourceQuota"),
    ("v1", "LimitRange"),
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    HELMRELEASE,
)
# Kinds a generic-app release can own.
WORKLOAD_KINDS: tuple[Key, ...] = (DEPLOYMENT, ("v1", "Service"), ("v1", "ConfigMap"))
HISTORY_LIMIT = 5
TOOL_TIMEOUT = 60
FAILURE = "context deadline exceeded"


@dataclass(frozen=True)
class _Chart:
    path: Path
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


def _key(obj: Obj) -> Key:
    return (obj["apiVersion"], obj["kind"])


def _ref(obj: Obj) -> tuple[str, str, str, str]:
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


def _from_inventory(entry: Obj) -> tuple[str, str, str, str]:
    namespace, name, group, kind = entry["id"].split("_")
    api_version = f"{group}/{entry['v']}" if group else entry["v"]
    return (api_version, kind, namespace, name)


def _condition(
    previous: list[Obj],
    type_: str,
    status: str,
    reason: str,
    message: str,
    generation: int,
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
        url: str | None = None,
    ) -> None:
        """``cluster``: the ``clusters/<cluster>`` to apply (needed when there are several);
        ``url``: the GitRepository's spec.url (the CRD allows http, https and ssh only)."""
        self.fake = fake
        self.workloads = kubecontrollers.Workloads(fake)
        self.remote = Path(remote)
        self.branch = branch
        self.helm = helm
        self.kubectl = kubectl
        self.cluster = cluster
        self.url = url or f"ssh://git@git.code-hub.internal/{self.remote.name}"
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
            cluster_dir = self._cluster_dir(run.root)
            root_ks = {
                "apiVersion": KUSTOMIZATION[0],
                "kind": KUSTOMIZATION[1],
                "metadata": {"name": SOURCE, "namespace": FLUX_NAMESPACE},
                "spec": {
                    "interval": "10m0s",
                    "path": f"./{cluster_dir.relative_to(run.root).as_posix()}",
                    "prune": True,
                    "sourceRef": {"kind": "GitRepository", "name": SOURCE},
                },
            }
            self._kustomization(run, self._apply_merged(root_ks), root=True)
            for release in sorted(run.releases, key=lambda r: _ref(r)):
                self._reconcile_release(run, release)
        return sha

    # ---- source-controller ---------------------------------------------------------------

    def _git(self, *args: str) -> str:
        where = ["--git-dir", str(self.remote)] if (self.remote / "HEAD").is_file() else []
        cwd = None if where else self.remote
        result = subprocess.run(
            ["git", *where, *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=TOOL_TIMEOUT,
            cwd=cwd,
        )
        return result.stdout.strip()

    def _export(self, run: _Run) -> None:
        where = ["--git-dir", str(self.remote)] if (self.remote / "HEAD").is_file() else []
        archive = subprocess.run(
            ["git", *where, "archive", "--format=tar", run.commit],
            capture_output=True,
            check=True,
            timeout=TOOL_TIMEOUT,
            cwd=None if where else self.remote,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(run.root, filter="data")
        run.size = len(archive)

    def _publish_source(self, run: _Run) -> None:
        self._apply_namespace(FLUX_NAMESPACE)
        repo = self._apply_merged(
            {
                "apiVersion": GITREPOSITORY[0],
                "kind": GITREPOSITORY[1],
                "metadata": {"name": SOURCE, "namespace": FLUX_NAMESPACE},
                "spec": {
                    "interval": "1m0s",
                    "ref": {"branch": self.branch},
                    "url": self.url,
                },
            }
        )
        path = f"gitrepository/{FLUX_NAMESPACE}/{SOURCE}/{run.commit}.tar.gz"
        message = f"stored artifact for revision '{run.revision}'"
        generation = repo["metadata"]["generation"]
        previous = (repo.get("status") or {}).get("conditions", [])
        status: Obj = {
            "observedGeneration": generation,
            "artifact": {
                "digest": f"sha256:{_sha256(run.commit)}",
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
        self.fake.set_status(*GITREPOSITORY, FLUX_NAMESPACE, SOURCE, _handled(repo, status))

    def _cluster_dir(self, root: Path) -> Path:
        clusters = sorted(p for p in (root / "clusters").iterdir() if p.is_dir())
        if self.cluster is not None:
            return root / "clusters" / self.cluster
        if len(clusters) != 1:
            names = [p.name for p in clusters]
            raise ValueError(f"clusters/ holds {names}: pass cluster= to FluxStandIn")
        return clusters[0]

    # ---- kustomize-controller ------------------------------------------------------------

    def _kustomization(self, run: _Run, stored: Obj, *, root: bool) -> None:
        """Build, apply and prune what one (applied) Kustomization points at, then its status."""
        name, namespace = stored["metadata"]["name"], stored["metadata"]["namespace"]
        generation = stored["metadata"]["generation"]
        status = copy.deepcopy(stored.get("status") or {})
        previous = status.get("conditions", [])
        path = run.root / stored["spec"]["path"]
        try:
            objects = self._build(path, plain=root)
        except (RuntimeError, OSError) as exc:
            detail = str(exc).replace(f"{run.root}/", "")
            message = f"kustomization path not found or build failed: {detail}"
            status |= {
                "observedGeneration": generation,
                "lastAttemptedRevision": run.revision,
                "conditions": [
                    _condition(previous, "Ready", "False", "BuildFailed", message, generation)
                ],
            }
            self.fake.set_status(*KUSTOMIZATION, namespace, name, _handled(stored, status))
            return
        labels = {KS_NAME: name, KS_NAMESPACE: namespace}
        order = sorted(objects, key=lambda o: (_key(o) != NAMESPACE, _key(o) == HELMRELEASE))
        applied: list[Obj] = []
        for obj in order:
            obj["metadata"]["labels"] = {**(obj["metadata"].get("labels") or {}), **labels}
            if _key(obj) == HELMRELEASE:
                finalizers = obj["metadata"].setdefault("finalizers", [])
                if FINALIZER not in finalizers:
                    finalizers.append(FINALIZER)
            applied.append(self._apply_merged(obj, recreate_deleting=True))
        self._prune(run, stored, applied, root=root)
        status |= {
            "observedGeneration": generation,
            "lastAppliedRevision": run.revision,
            "lastAttemptedRevision": run.revision,
            "inventory": {
                "entries": sorted(
                    (
                        {"id": inventory_id(o), "v": o["apiVersion"].rpartition("/")[2]}
                        for o in applied
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
                    f"Applied revision: {run.revision}",
                    generation,
                )
            ],
        }
        self.fake.set_status(*KUSTOMIZATION, namespace, name, _handled(stored, status))
        for obj in applied:
            if _key(obj) == KUSTOMIZATION:
                self._kustomization(run, obj, root=False)
            elif _key(obj) == HELMRELEASE:
                run.releases.append(obj)

    def _build(self, path: Path, *, plain: bool) -> list[Obj]:
        """``kubectl kustomize`` of a directory; one without a kustomization file is
        applied as its YAML files (what kustomize-controller generates for it)."""
        if plain and not any(
            (path / f).is_file() for f in ("kustomization.yaml", "kustomization.yml")
        ):
            docs: list[Obj] = []
            for file in sorted(path.glob("*.y*ml")):
                docs += yamlio.load_all(file.read_text(encoding="utf-8"))
            return [json.loads(json.dumps(d)) for d in docs]
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
                raise RuntimeError(result.stderr.strip())
            self._builds[digest] = [
                json.loads(json.dumps(d)) for d in yamlio.load_all(result.stdout)
            ]
        return copy.deepcopy(self._builds[digest])

    def _apply_namespace(self, name: str) -> None:
        if self.fake.get(*NAMESPACE, None, name) is None:
            self.fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def _apply_merged(self, obj: Obj, *, recreate_deleting: bool = False) -> Obj:
        """Apply, keeping ``reconcile.fluxcd.io/*`` annotations others set (server-side apply)."""
        api_version, kind, namespace, name = _ref(obj)
        existing = self.fake.get(api_version, kind, namespace or None, name)
        if (
            existing is not None
            and recreate_deleting
            and existing["metadata"].get("deletionTimestamp")
        ):
            self._delete(existing, hold=False)
            existing = None
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
        return self.fake.apply(obj)

    def _prune(self, run: _Run, ks: Obj, applied: list[Obj], *, root: bool) -> None:
        name, namespace = ks["metadata"]["name"], ks["metadata"]["namespace"]
        desired = {_ref(o) for o in applied}
        entries = ((ks.get("status") or {}).get("inventory") or {}).get("entries", [])
        candidates = {_from_inventory(e) for e in entries}
        keys = {(ref[0], ref[1]) for ref in candidates} | set(TENANT_KINDS)
        for key in keys:
            for obj in self.fake.items(*key):
                labels = obj["metadata"].get("labels") or {}
                ours = labels.get(KS_NAME) == name and labels.get(KS_NAMESPACE) == namespace
                managed = not root and labels.get(MANAGED_BY) == "gitops-bridge"
                if ours or managed:
                    candidates.add(_ref(obj))
        gone = sorted(
            candidates - desired, key=lambda r: (r[1] == "Namespace", r[1] != "HelmRelease")
        )
        for api_version, kind, obj_namespace, obj_name in gone:
            found = self.fake.get(api_version, kind, obj_namespace or None, obj_name)
            if found is not None:
                self._delete(found, hold=run.hold_deletes)

    def _delete(self, obj: Obj, *, hold: bool) -> None:
        api_version, kind, namespace, name = _ref(obj)
        if (api_version, kind) != HELMRELEASE:
            self.fake.delete(api_version, kind, namespace or None, name)
            return
        if not obj["metadata"].get("deletionTimestamp"):
            self.fake.delete(api_version, kind, namespace, name, graceful=True)
        if hold:
            return
        release, target = _release_name(obj), _target_namespace(obj)
        self._remove_workloads(target, release, keep=set())
        self.fake.delete(api_version, kind, namespace, name)

    # ---- helm-controller -----------------------------------------------------------------

    def _reconcile_release(self, run: _Run, applied: Obj) -> None:
        api_version, kind, namespace, name = _ref(applied)
        hr = self.fake.get(api_version, kind, namespace, name)
        if hr is None or hr["metadata"].get("deletionTimestamp") or hr["spec"].get("suspend"):
            return
        scenario = run.scenario.get(name, "success")
        generation = hr["metadata"]["generation"]
        prev = hr.get("status") or {}
        release, target = _release_name(hr), _target_namespace(hr)
        chart = self._chart(run, hr)
        values = hr["spec"].get("values") or {}
        digest = config_digest(values)
        history = [dict(h) for h in prev.get("history") or []]
        deployed = next((h for h in history if h["status"] == "deployed"), None)
        if scenario == "failed-upgrade" and deployed is None:
            history = self._release(history, release, target, chart, digest, "deployed")
            self._apply_workloads(run, hr, chart, health="ok")
            deployed = history[0]
        action = "install" if deployed is None else "upgrade"
        conditions: list[Obj] = []
        previous = prev.get("conditions", [])
        ref = f"{target}/{release}"
        with_chart = f"with chart {chart.name}@{chart.version}"
        status: Obj = {
            "observedGeneration": generation,
            "helmChart": f"{FLUX_NAMESPACE}/{namespace}-{name}",
            "lastAttemptedGeneration": generation,
            "lastAttemptedReleaseAction": action,
            "lastAttemptedRevision": chart.version,
            "lastAttemptedConfigDigest": digest,
            "storageNamespace": target,
        }

        def cond(type_: str, state: str, reason: str, message: str) -> None:
            conditions.append(_condition(previous, type_, state, reason, message, generation))

        if scenario == "progressing":
            message = f"Running '{action}' action with timeout of 5m0s"
            status["observedGeneration"] = min(prev.get("observedGeneration", -1), generation - 1)
            cond("Reconciling", "True", "Progressing", message)
            cond("Ready", "Unknown", "Progressing", message)
            conditions += [c for c in previous if c["type"] in ("Released", "Remediated")]
        elif scenario == "stalled":
            verb = action.capitalize()
            failed = f"Helm {action} failed for release {ref} {with_chart}: {FAILURE}"
            history = self._release(history, release, target, chart, digest, "failed")
            status[f"{action}Failures"] = 3
            status["failures"] = 3
            cond("Stalled", "True", "RetriesExceeded", f"Failed to {action} after 3 attempt(s)")
            cond("Ready", "False", f"{verb}Failed", failed)
            cond("Released", "False", f"{verb}Failed", failed)
            if deployed is None:
                self._remove_workloads(target, release, keep=set())
            else:
                cond("Remediated", "True", "RollbackSucceeded", _rollback(ref, chart, deployed))
        elif scenario == "failed-upgrade":
            assert deployed is not None
            failed = f"Helm upgrade failed for release {ref} {with_chart}: {FAILURE}"
            again = _reason(previous, "Ready") == "UpgradeFailed"
            count = prev.get("upgradeFailures", 0) + 1 if again else 1
            history = self._release(history, release, target, chart, digest, "failed")
            status |= {"upgradeFailures": count, "failures": count}
            cond("Ready", "False", "UpgradeFailed", failed)
            cond("Released", "False", "UpgradeFailed", failed)
            cond("Remediated", "True", "RollbackSucceeded", _rollback(ref, chart, deployed))
        else:
            changed = deployed is None or (deployed["chartVersion"], deployed["configDigest"]) != (
                chart.version,
                digest,
            )
            if changed:
                history = self._release(history, release, target, chart, digest, "deployed")
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
            self._apply_workloads(
                run, hr, chart, health="crashloop" if scenario == "crashloop" else "ok"
            )
        status["history"] = history[:HISTORY_LIMIT]
        status["conditions"] = conditions
        self.fake.set_status(*HELMRELEASE, namespace, name, _handled(hr, status, helm=True))

    def _chart(self, run: _Run, hr: Obj) -> _Chart:
        spec = hr["spec"]
        template = (spec.get("chart") or {}).get("spec") or {}
        path = run.root / template.get("chart", "./charts/generic-app")
        meta = yamlio.load((path / "Chart.yaml").read_text(encoding="utf-8"))
        version = str(meta["version"])
        if template.get("reconcileStrategy") == "Revision":
            version = f"{version}+{run.commit[:12]}"
        app_version = str(meta["appVersion"]) if meta.get("appVersion") else None
        return _Chart(path, str(meta["name"]), version, app_version)

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
        return copy.deepcopy(self._renders[digest])

    def _run_helm(self, hr: Obj, chart: _Chart) -> list[Obj]:
        release, target = _release_name(hr), _target_namespace(hr)
        with tempfile.TemporaryDirectory(prefix="fluxstandin-values-") as tmp:
            values = Path(tmp) / "values.yaml"
            values.write_text(yamlio.dump(hr["spec"].get("values") or {}, header=False), "utf-8")
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

    def _apply_workloads(self, run: _Run, hr: Obj, chart: _Chart, *, health: str) -> None:
        release, target = _release_name(hr), _target_namespace(hr)
        rendered = self._helm_template(hr, chart)
        for obj in rendered:
            meta = obj.setdefault("metadata", {})
            meta.setdefault("namespace", target)
            annotations = meta.setdefault("annotations", {})
            annotations |= {RELEASE_NAME: release, RELEASE_NAMESPACE: target}
        self._remove_workloads(target, release, keep={_ref(o) for o in rendered})
        for obj in rendered:
            stored = self.fake.apply(obj)
            if _key(stored) == DEPLOYMENT:
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


# ---- pure helpers -------------------------------------------------------------------------


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
