"""The use cases of gitops-bridge, without Flask: read state, create groups and deployments.

Every write is a function from the newest repository snapshot to a ``render.Change``;
``GitRepo.apply`` runs it, and runs it again on a fresher main if the push raced, so
validation and quota are always checked against what the commit lands on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gitops_bridge import assets, bootstrap, models, mounts, quantity, quota, registry, render
from gitops_bridge import state as states
from gitops_bridge.config import Settings
from gitops_bridge.errors import (
    BridgeError,
    Conflict,
    FieldProblem,
    Forbidden,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
)
from gitops_bridge.gitrepo import Author, CommitResult, GitRepo, Snapshot
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment, DeploymentSpec, Group
from gitops_bridge.render import layout
from gitops_bridge.render import secrets as secretfiles
from gitops_bridge.secretstore import SecretStore
from gitops_bridge.state import State as State  # re-exported: history and tests use it

ID_ALPHABET = string.ascii_lowercase + string.digits
KEY_LOCK_STRIPES = 64
TRAILER_ACTION = "Gitops-Bridge-Action"
TRAILER_DEPLOYMENT = "Gitops-Bridge-Deployment"
TRAILER_GROUP = "Gitops-Bridge-Group"
TRAILER_REQUEST = "Gitops-Bridge-Request"
STATES = 8  # states of recent commits kept (the newest is what most requests read)
# seconds between two states kept for the next start: any stored commit will do (the next
# start reads what changed since), and storing 20,000 deployments takes the interpreter
# for ~0.5 s
STORE_EVERY = 1800.0
# the fields that size a deployment against the quota: a request refused for others is
# checked against the quota too (``Service._and_quota``)
SIZING = frozenset({"replicas", "resources", "expose", "autoscaling", "volumes"})


log = logging.getLogger(__name__)


def random_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(models.ID_LENGTH))


@dataclass(frozen=True)
class Problem:
    """A file under tenants/ the bridge cannot use, and why."""

    path: str
    group: str
    problem: str

    @property
    def deployment(self) -> str | None:
        """The deployment an apps/ file is named after (its history may hold a fix)."""
        parts = self.path.split("/")
        if len(parts) == 4 and parts[2] == layout.APPS_DIR and parts[3].endswith(".yaml"):
            return parts[3].removesuffix(".yaml")
        return None


@dataclass(frozen=True)
class GroupView:
    group: Group
    usage: quota.Usage
    deployments: int
    storage: int | None = None  # bytes of the group's registry images; None: not known
    storage_note: str = ""  # why not, when a registry is configured but did not answer
    files: tuple[Problem, ...] = ()  # files of its folder the bridge cannot use


@dataclass(frozen=True)
class Written:
    """The result of a write: the deployment/group as committed and the commit.

    In review mode ``change`` is the change request that now waits for approval.
    """

    commit: CommitResult
    deployment: Deployment | None = None
    group: Group | None = None
    change: Any = None  # review.ChangeRequest
    message: str = ""  # what a multi-step write did, and what comes next
    volume: models.Volume | None = None


@dataclass(frozen=True)
class Plan:
    """What a write would commit: the change and the deployment it leaves (None: deleted)."""

    change: render.Change
    deployment: Deployment | None = None


Planner = Callable[[Snapshot, State], Plan]


@dataclass(frozen=True)
class RequestToken:
    """An Idempotency-Key, scoped to its user, as recorded in a commit trailer."""

    key_id: str
    digest: str

    def line(self) -> str:
        return f"{TRAILER_REQUEST}: {self.key_id} {self.digest}"


class Duplicate(Exception):
    """The request was committed before under the same Idempotency-Key."""

    def __init__(self, sha: str) -> None:
        super().__init__(sha)
        self.sha = sha


class Service:
    def __init__(
        self,
        settings: Settings,
        repo: GitRepo,
        *,
        new_id: Callable[[], str] = random_id,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        stored: Path | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.new_id = new_id
        self.clock = clock
        self.sidecar = quota.Sidecar(
            cpu=quantity.parse(settings.frp.cpu), memory=quantity.parse(settings.frp.memory)
        )
        self.review: Any = None  # review.Reviews, attached by open_service
        self.secrets = SecretStore(settings)
        self.registry = registry.from_settings(settings.registry)
        self._states: OrderedDict[str, State] = OrderedDict()  # the newest STATES commits
        self._states_lock = threading.Lock()
        self._first_lock = threading.Lock()
        self.reader = states.Reader(_Source(repo), sidecar=self.sidecar)
        # where a state is kept for the next start (None: not kept)
        self._stored_path: Path | None = stored
        self._looked = False
        self._stored_at = 0.0
        self._storing = threading.Lock()
        # striped: a fixed number of locks, whatever the number of keys ever seen
        self._key_locks = [threading.Lock() for _ in range(KEY_LOCK_STRIPES)]

    # ---- reading ---------------------------------------------------------------

    def state(self, snapshot: Snapshot | None = None) -> State:
        """The state at a snapshot (default: the newest main), derived from a state already
        built where one is: only the folders that changed are read."""
        if snapshot is None:
            self.repo.refresh()
            snapshot = self.repo.snapshot()
        key = snapshot.commit or ""
        with self._states_lock:
            cached = self._states.get(key)
            if cached is not None:
                self._states.move_to_end(key)
                return cached
            base = self._states.get(snapshot.parent or "") if snapshot.parent else None
            newest = next(reversed(self._states.values()), None)
        if base is not None:
            groups = _folders_of(snapshot.changed)
        else:
            base = newest or self._first(snapshot)
            if base.commit == snapshot.commit:
                return base
            if base.commit is None or snapshot.commit is None:  # from or to no commit
                groups = set(base.folders) | set(snapshot.folders())
            else:
                groups = _folders_of(self.repo.differences(base.commit, snapshot.commit))
        state = self.reader.derive(base, snapshot.commit, {g: snapshot.folder(g) for g in groups})
        self._keep(state)
        self._store(state)
        return state

    def _first(self, snapshot: Snapshot) -> State:
        """The first state of this process: the one the last run stored, else the snapshot's
        read whole. One thread makes it; the others wait for it rather than read too."""
        with self._first_lock:
            with self._states_lock:
                newest = next(reversed(self._states.values()), None)
            if newest is not None:
                return newest
            first = self._stored()
            if first is not None:
                self._stored_at = time.monotonic()  # as good as stored now
            if first is None or snapshot.commit is None:
                first = self.reader.build(snapshot.commit, snapshot.folders())
                self._store(first, now=True)
            self._keep(first)
            return first

    def _keep(self, state: State) -> None:
        with self._states_lock:
            self._states[state.commit or ""] = state
            self._states.move_to_end(state.commit or "")
            while len(self._states) > STATES:
                self._states.popitem(last=False)

    def _stored(self) -> State | None:
        """The state the last run stored, if it is of a commit this clone has."""
        if self._stored_path is None or self._looked:
            return None
        self._looked = True  # once per process: afterwards states derive from each other
        return states.load(self._stored_path, self.repo.has_commit, sidecar=self.sidecar)

    def _store(self, state: State, *, now: bool = False) -> None:
        """Keep a state for the next start, in the background: at once after the whole
        repository was read, then every STORE_EVERY seconds."""
        if self._stored_path is None or state.commit is None:
            return
        due = now or time.monotonic() - self._stored_at >= STORE_EVERY
        if not due or not self._storing.acquire(blocking=False):
            return
        self._stored_at = time.monotonic()
        path = self._stored_path

        def save() -> None:
            try:
                states.save(state, path)
            except OSError as exc:
                log.warning("cannot store the state for the next start: %s", exc)
            finally:
                self._storing.release()

        threading.Thread(target=save, name="state-store", daemon=True).start()

    def fresh_state(self, *, group: str | None = None, deployment: str | None = None) -> State:
        """The state, fetched anew when it lacks the named group/deployment (another
        replica may have just created it), so a stale clone never answers 404 wrongly."""
        state = self.state()
        if (group is not None and group not in state.groups) or (
            deployment is not None and deployment not in state.deployments
        ):
            self.repo.refresh(max_age=0)
            state = self.state()
        return state

    def groups(self, user: User, *, storage: bool = False) -> list[GroupView]:
        """The user's groups with their usage; ``storage``: also ask the registry how much
        their images take (a registry that does not answer leaves it unknown, with a note)."""
        state = self.state()
        views = []
        for group in sorted(state.groups.values(), key=lambda g: g.name):
            if not user.member_of(group.name, group.members):
                continue
            used, note = self.image_storage(group.name) if storage else (None, "")
            views.append(
                GroupView(
                    group=group,
                    usage=state.usage(group.name),
                    deployments=len(state.in_group(group.name)),
                    storage=used,
                    storage_note=note,
                    files=tuple(
                        Problem(path=path, group=group.name, problem=why)
                        for path, why in sorted(state.problems_in(group.name).items())
                    ),
                )
            )
        return views

    def image_storage(self, group: str) -> tuple[int | None, str]:
        """Bytes of the group's registry images (shared blobs once); None with a note when the
        registry does not answer, None alone when there is none."""
        if self.registry is None:
            return None, ""
        try:
            return self.registry.usage(self.settings.registry.prefix(group)), ""
        except BridgeError as exc:
            return None, exc.message

    def images(self, user: User, group: str) -> list[registry.Repository]:
        """The group's repositories in the platform registry, tags newest first; [] when
        no registry is configured. ``RegistryUnavailable`` when it does not answer."""
        self.group(user, group)
        if self.registry is None:
            return []
        return self.registry.images(self.settings.registry.prefix(group))

    def group(self, user: User, name: str) -> Group:
        return self.member_group(self.fresh_state(group=name), user, name)

    def deployment(self, user: User, name: str) -> Deployment:
        state = self.fresh_state(deployment=name)
        missing = f"deployment {name!r} not found"
        deployment = state.deployments.get(name)
        if deployment is None:
            path = state.app_file(name)
            if path is None:
                raise NotFound(missing)
            self.member_group(state, user, path.split("/")[1], missing=missing)
            raise Conflict(
                f"deployment {name} cannot be read: {path}: {state.unreadable[path]}. "
                "To repair it: fix or delete the file in Git, or restore a readable version "
                "from its history, or delete the deployment"
            )
        self.member_group(state, user, deployment.group, missing=missing)
        return deployment

    def problems(self, user: User, group: str | None = None) -> list[Problem]:
        """Files under tenants/ the bridge cannot use, in the groups the user belongs to
        (platform admins: every group, those whose record cannot be read included)."""
        state = self.state()
        found = []
        for path, why in sorted(state.unreadable.items()):
            name = path.split("/")[1]
            if group is not None and name != group:
                continue
            record = state.groups.get(name)
            if user.admin or (record is not None and user.member_of(name, record.members)):
                found.append(Problem(path=path, group=name, problem=why))
        return found

    def check_repairs(self, state: State, group: str, change: render.Change) -> None:
        """Refuse a change to a group whose folder holds files the bridge cannot use, unless
        the change writes or deletes one of them (a repair): the group's Kustomization would
        not build, so committing on top of it changes nothing in the cluster but hides the
        problem. Other groups are not affected."""
        problems = state.problems_in(group)
        touched = {m.path for m in change.writes} | set(change.deletes)
        if not problems or touched & set(problems):
            return
        listed = "; ".join(f"{path}: {why}" for path, why in sorted(problems.items())[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise Conflict(
            f"group {group} has files gitops-bridge cannot use: {listed}{more}. Nothing was "
            "written: fix or delete them in Git, or restore a readable version of the "
            "deployment from its history, then try again"
        )

    def url(self, deployment: Deployment) -> str:
        return f"https://{deployment.name}.{self.settings.domain}"

    def mode(self, group: Group) -> str:
        return group.review or self.settings.review.mode

    # ---- writing ---------------------------------------------------------------

    def create_group(self, user: User, data: object) -> Written:
        if not user.admin:
            raise Forbidden("only platform admins may create groups")
        group = models.parse_group(data)

        def build(snapshot: Snapshot) -> render.Change:
            state = self.state(snapshot)
            if group.name in state.groups:
                raise Conflict(
                    f"name: group {group.name!r} exists already",
                    problems=[
                        FieldProblem(
                            "name", f"Group {group.name!r} exists already: pick another name."
                        )
                    ],
                )
            folder = layout.group_dir(group.name)
            if snapshot.folder(group.name):  # e.g. its namespace.yaml cannot be read
                why = state.unreadable.get(f"{folder}/namespace.yaml")
                taken = (
                    f"the folder {folder}/ exists already"
                    + (f" ({folder}/namespace.yaml: {why})" if why else "")
                    + ": creating the group again would take over its deployments and drop "
                    "its files from the platform; fix or remove the folder in Git first"
                )
                raise Conflict(
                    f"name: {taken}", problems=[FieldProblem("name", f"The {taken[4:]}.")]
                )
            files, index, _ = self._platform(snapshot, group)
            writes = [*files, index]
            writes.append(render.tenants_kustomization(_listed_groups(snapshot, state, group.name)))
            writes.append(render.apps_placeholder(group.name))
            return render.Change(
                message=f"Create group {group.name}",
                writes=tuple(writes),
                trailers={TRAILER_ACTION: "create-group", TRAILER_GROUP: group.name},
            )

        return Written(commit=self.repo.apply(build, author=self.author(user)), group=group)

    def update_group(self, user: User, name: str, patch: object) -> Written:
        """Change a group's members, admins, quota or review mode (platform admins).

        A quota below the current usage is allowed: the group then cannot grow or replace
        pods (restart, new image, env, ...) until it fits again, but can still scale down,
        stop and delete (see quota.check).
        """
        if not user.admin:
            raise Forbidden("only platform admins may change groups")
        if not isinstance(patch, dict):
            raise InvalidRequest.field("", "the body must be a JSON object")
        if "name" in patch and patch["name"] != name:
            raise InvalidRequest.field("name", "cannot be changed; create a new group instead")
        current = self.member_group(self.fresh_state(group=name), user, name)
        models.parse_group(_merged_group(current, patch))  # fail fast, before the lock
        updated: list[Group] = []

        def build(snapshot: Snapshot) -> render.Change:
            state = self.state(snapshot)
            before = state.groups.get(name)
            if before is None:
                raise NotFound(f"group {name!r} not found (deleted meanwhile?)")
            group = models.parse_group(_merged_group(before, patch))
            updated[:] = [group]
            files, index, _ = self._platform(snapshot, group)
            writes = [*files, index]
            summary = "; ".join(_group_differences(before, group)) or "no changes"
            change = render.Change(
                message=f"Update group {name}: {summary}",
                writes=tuple(writes),
                trailers={TRAILER_ACTION: "update-group", TRAILER_GROUP: name},
            )
            self.check_repairs(state, name, change)
            return change

        commit = self.repo.apply(build, author=self.author(user))
        return Written(commit=commit, group=updated[0] if updated else current)

    def upgrade_repository(self, user: User) -> Written:
        """Bring the repository to this version's layout (platform admins), one commit a run.

        A repository of the earlier layout, where the platform Kustomization applied every
        HelmRelease, moves its releases to the groups' own Kustomizations in three runs, each
        after Flux has applied the one before (kustomize-controller prunes what a
        Kustomization no longer lists, unless the object says ``prune: disabled``):
        1. everything new is written and the releases say ``prune: disabled``, still listed
           by the platform; 2. the platform stops listing them (nothing is deleted, the
           groups' Kustomizations own them now); 3. ``prune: disabled`` goes. Otherwise the
           vendored chart, the files of repo-template for every cluster, every group's
           platform files and every HelmRelease are written anew; a current repository
           gets no commit. ``Written.message`` says what the run did and what comes next.
        """
        if not user.admin:
            raise Forbidden("only platform admins may upgrade the repository")
        self.repo.refresh(max_age=0)  # decide the stage on the newest main
        outcome: list[str] = []

        def build(snapshot: Snapshot) -> render.Change:
            state = self.state(snapshot)
            if state.unreadable:  # it re-renders every file: it cannot guess what these hold
                listed_problems = "; ".join(
                    f"{path}: {why}" for path, why in sorted(state.unreadable.items())[:5]
                )
                raise Conflict(
                    f"{len(state.unreadable)} files under {layout.TENANTS_DIR}/ cannot be used "
                    f"({listed_problems}): fix or delete them in Git, then upgrade"
                )
            listed = {group: _listed_apps(snapshot, group) for group in state.groups}
            legacy = any(listed.values())
            kept = any(d.keep_on_prune for d in state.deployments.values())
            if legacy and kept:
                stage, note = 2, "the groups own their releases; run again once Flux applied this"
            elif legacy:
                stage, note = 1, "releases kept from pruning; run again once Flux applied this"
            elif kept:
                stage, note = 3, "done"
            else:
                stage, note = 0, "done"
            outcome[:] = [f"stage {stage}: {note}" if stage else note]
            writes: list[render.Manifest] = []
            deletes: list[str] = []
            if stage != 2:
                writes += self._shipped_files(snapshot, deletes)
            for group in state.groups.values():
                still = listed[group.name] if stage == 1 else []  # the platform's until 2
                files, index, stale = self._platform(snapshot, group, legacy=still)
                writes.append(index)
                if stage == 2:
                    continue
                writes += [*files, render.apps_placeholder(group.name)]
                deletes += stale
            if stage != 2:
                writes += [
                    render.helmrelease(
                        d.model_copy(update={"keep_on_prune": stage == 1}),
                        settings=self.settings,
                        current=snapshot.read(render.app_path(d.group, d.name)),
                        before=d,
                    )
                    for d in state.deployments.values()
                ]
            return render.Change(
                message=f"Upgrade the repository to this gitops-bridge's layout ({outcome[0]})",
                writes=tuple(writes),
                deletes=tuple(deletes),
                trailers={TRAILER_ACTION: "upgrade-repository"},
            )

        commit = self.repo.apply(build, author=self.author(user))
        return Written(commit=commit, message=outcome[0] if outcome else "")

    def rotate_secrets(self, user: User, *, force: bool = False) -> Written:
        """Re-encrypt every secret file the bridge keeps for today's recipients, with a new
        data key (platform admins), in one commit that can be reviewed and reverted;
        ``force``: every file, not only those whose recipients differ."""
        if not user.admin:
            raise Forbidden("only platform admins may re-encrypt the repository's secrets")
        self.repo.refresh(max_age=0)
        counted: list[int] = []

        def build(snapshot: Snapshot) -> render.Change | None:
            state = self.state(snapshot)
            writes = self.secrets.rotation(snapshot, sorted(state.groups), force=force)
            counted[:] = [len(writes)]
            if not writes:
                return None
            listed = "\n".join(f"- {m.path}" for m in writes[:50])
            more = f"\n- and {len(writes) - 50} more" if len(writes) > 50 else ""
            recipients = "\n".join(f"- {r}" for r in self.secrets.platform_recipients())
            return render.Change(
                message=(
                    f"Re-encrypt {len(writes)} secret files for today's recipients\n\n"
                    f"Recipients:\n{recipients}\n\nFiles:\n{listed}{more}"
                ),
                writes=tuple(writes),
                trailers={TRAILER_ACTION: "rotate-secrets"},
            )

        commit = self.repo.apply(build, author=self.author(user))
        count = counted[0] if counted else 0
        return Written(commit=commit, message=f"{count} files re-encrypted")

    def _platform(
        self, snapshot: Snapshot, group: Group, *, legacy: list[str] | None = None
    ) -> tuple[list[render.Manifest], render.Manifest, list[str]]:
        """A group's platform files as rendered now, the kustomization listing them (with
        ``legacy`` apps/ entries), and the platform files in Git no longer rendered."""
        base = layout.group_dir(group.name)
        keys = self.secrets.group_files(snapshot, group)
        files = render.group_files(
            group,
            settings=self.settings,
            helmreleases=render.quota_helmreleases(snapshot.read(f"{base}/quota.yaml")),
            decryption=bool(keys),
        )
        files += keys
        names = [m.path.rsplit("/", 1)[1] for m in files]
        index = render.group_kustomization(group.name, files=names, legacy=legacy or ())
        rendered = {m.path for m in files}
        stale = [
            f"{base}/{name}"
            for name in layout.PLATFORM_FILES
            if snapshot.blob(f"{base}/{name}") is not None and f"{base}/{name}" not in rendered
        ]
        return files, index, stale

    def _shipped_files(self, snapshot: Snapshot, deletes: list[str]) -> list[render.Manifest]:
        """The vendored chart and repo-template's cluster files for every cluster in clusters/
        (chart files no longer shipped are added to ``deletes``)."""
        clusters = sorted({path.split("/")[1] for path in snapshot.under("clusters")})
        shipped: dict[str, bytes] = {}
        for cluster in clusters or [self.settings.cluster]:
            for path, data in bootstrap.template_files(
                cluster=cluster, decryption=bool(self.settings.secrets.age_recipients)
            ).items():
                if path.startswith(("charts/", "clusters/")):
                    shipped[path] = data
        chart_dir = "charts/" + assets.chart().name
        deletes += [path for path in snapshot.under(chart_dir) if path not in shipped]
        return [render.Manifest(path, data.decode()) for path, data in shipped.items()]

    def create_deployment(
        self, user: User, group_name: str, data: object, *, key: str | None = None
    ) -> Written:
        try:
            spec = models.parse_deployment(data, limits=self.settings.limits)
        except InvalidRequest as exc:
            raise self._and_quota(exc, user, group_name, data, None) from None

        def plan(snapshot: Snapshot, state: State) -> Plan:
            return self._plan_create(snapshot, state, user, group_name, spec)

        return self.write(user, group=group_name, action="create", plan=plan, key=key, body=data)

    def preview_deployment(self, user: User, group_name: str, data: object) -> render.Change:
        """The change a create request would commit now, without writing anything."""
        spec = models.parse_deployment(data, limits=self.settings.limits)
        self.repo.refresh()
        snapshot = self.repo.snapshot()
        state = self.state(snapshot)
        return self._plan_create(snapshot, state, user, group_name, spec).change

    def update_deployment(
        self, user: User, name: str, patch: object, *, key: str | None = None
    ) -> Written:
        """Change image, replicas, port, env, resources, expose, volumes, health, command, args
        or autoscaling (a JSON merge patch)."""
        if not isinstance(patch, dict):
            raise InvalidRequest.field("", "the body must be a JSON object")
        fixed = sorted({"name", "id", "group"} & set(patch))
        if fixed:
            raise InvalidRequest.of(
                [FieldProblem(f, "cannot be changed; deploy a new one instead") for f in fixed]
            )
        current = self.deployment(user, name)
        try:
            models.merge_patch(current.spec, patch, limits=self.settings.limits)  # fail fast
        except InvalidRequest as exc:
            raise self._and_quota(exc, user, current.group, patch, current) from None

        def plan(snapshot: Snapshot, state: State) -> Plan:
            before = self._existing(state, name)
            spec = models.merge_patch(before.spec, patch, limits=self.settings.limits)
            after = before.model_copy(update={"spec": spec})
            return self._plan_replace(snapshot, state, before, after, "update", user=user.name)

        return self.write(
            user, group=current.group, action="update", plan=plan, key=key, body=patch, target=name
        )

    def _and_quota(
        self,
        refused: InvalidRequest,
        user: User,
        group_name: str,
        data: object,
        before: Deployment | None,
    ) -> InvalidRequest:
        """A refused body may not fit the quota either: say both at once, so a form shows
        every problem at its field in one round. The quota is checked (on the main known
        now, nothing written) when the fields that size the deployment are valid; the
        others keep their current value, or a stand-in for a new deployment's name and
        image. Anything else in the way: the refusal as it was."""
        fields = {p.field.split(".")[0].split("[")[0] for p in refused.problems}
        if not isinstance(data, Mapping) or fields & SIZING or "" in fields:
            return refused
        kept = {key: value for key, value in data.items() if key not in fields}
        relaxed = self.settings.limits.model_copy(update={"allowed_registries": []})
        try:
            state = self.fresh_state(group=group_name)
            group = self.member_group(state, user, group_name)
            if before is None:
                stand_in = {"name": "sizing", "image": "registry.invalid/sizing:1"}
                spec = models.parse_deployment(stand_in | kept, limits=relaxed)
                after = Deployment(group=group_name, id=self.new_id(), spec=spec)
            else:
                spec = models.merge_patch(before.spec, kept, limits=relaxed)
                after = before.model_copy(update={"spec": spec})
            quota.check(
                group,
                current=state.in_group(group_name),
                used=state.usage(group_name),
                before=before,
                after=self.with_volumes(state, after),
                sidecar=self.sidecar,
            )
        except QuotaExceeded as exc:
            return InvalidRequest.of([*refused.problems, *exc.problems])
        except BridgeError:
            return refused
        return refused

    def scale(self, user: User, name: str, replicas: object, *, key: str | None = None) -> Written:
        return self.update_deployment(user, name, {"replicas": replicas}, key=key)

    def restart(self, user: User, name: str, *, key: str | None = None) -> Written:
        """A rolling restart: a new pod-template annotation, nothing else changes."""
        current = self.deployment(user, name)
        stamp = self.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        def plan(snapshot: Snapshot, state: State) -> Plan:
            before = self._existing(state, name)
            after = before.model_copy(update={"restarted_at": stamp})
            return self._plan_replace(snapshot, state, before, after, "restart", user=user.name)

        # the stamp is made here, not asked for: a retried restart is the same request
        return self.write(
            user, group=current.group, action="restart", plan=plan, key=key, body={}, target=name
        )

    def delete_deployment(self, user: User, name: str, *, key: str | None = None) -> Written:
        """Remove the HelmRelease's file; the group's Kustomization prunes the rest. Works
        on a file the bridge cannot read too (deleting it is one way to repair its group)."""
        state = self.fresh_state(deployment=name)
        found = state.app_file(name)
        missing = f"deployment {name!r} not found"
        if found is None:
            raise NotFound(missing)
        group = found.split("/")[1]
        self.member_group(state, user, group, missing=missing)

        def plan(snapshot: Snapshot, state: State) -> Plan:
            path = state.app_file(name)
            if path is None:
                raise NotFound(f"deployment {name!r} not found (deleted meanwhile?)")
            values = secretfiles.secrets_path(group, name)
            also = (values,) if snapshot.blob(values) is not None else ()
            change = render.Change(
                message=f"Delete {name} from {group}",
                deletes=(path, *also),
                trailers={
                    TRAILER_ACTION: "delete",
                    TRAILER_GROUP: group,
                    TRAILER_DEPLOYMENT: name,
                },
            )
            return Plan(change=change, deployment=None)

        return self.write(
            user, group=group, action="delete", plan=plan, key=key, body={}, target=name
        )

    def write(
        self,
        user: User,
        *,
        group: str,
        action: str,
        plan: Planner,
        key: str | None = None,
        body: object = None,
        target: str | None = None,
    ) -> Written:
        """Commit a planned change, directly to main or as a change request, exactly once."""
        group_record = self.member_group(self.fresh_state(group=group), user, group)
        request = {"action": action, "group": group, "target": target, "body": body}
        token = self._token(user, key, request) if key else None
        if token is None:
            return self._write_once(user, group_record, action, plan, None, target)
        with self._key_lock(token.key_id):
            previous = self._previous(user, token)
            if previous is not None:
                return previous
            try:
                return self._write_once(user, group_record, action, plan, token, target)
            except Duplicate as dup:  # another replica committed it meanwhile
                found = self._result_of(user, dup.sha)
                assert found is not None
                return found

    def _write_once(
        self,
        user: User,
        group: Group,
        action: str,
        plan: Planner,
        token: RequestToken | None,
        target: str | None,
    ) -> Written:
        planned: list[Plan] = []

        def build(snapshot: Snapshot) -> render.Change:
            if token is not None:
                sha = self.repo.find_message(token.line())
                if sha is not None:
                    raise Duplicate(sha)
            state = self.state(snapshot)
            self.member_group(state, user, group.name)
            result = plan(snapshot, state)
            self.check_repairs(state, group.name, result.change)
            planned[:] = [result]
            change = result.change
            if token is not None:
                change = replace(
                    change,
                    trailers={**change.trailers, TRAILER_REQUEST: token.line().split(": ", 1)[1]},
                )
            return change

        if self.mode(group) == "pull-request":
            assert self.review is not None
            return self.review.propose(user, group, action, build, planned, target)  # type: ignore[no-any-return]
        commit = self.repo.apply(build, author=self.author(user))
        return Written(commit=commit, deployment=planned[0].deployment if planned else None)

    # ---- idempotency -------------------------------------------------------------

    def _token(self, user: User, key: str, request: object) -> RequestToken:
        """The key scoped to its principal; the digest binds it to one request: the action,
        its group and target, and the body (so a key reused for anything else is refused)."""
        if not key or len(key) > 255 or not key.isprintable():
            raise InvalidRequest.field("Idempotency-Key", "must be 1..255 printable characters")
        key_id = hashlib.sha256(f"{user.name}\0{key}".encode()).hexdigest()[:32]
        masked = _masked(request, self.secrets.digest)
        canonical = json.dumps(masked, sort_keys=True, default=str).encode()
        return RequestToken(key_id=key_id, digest=hashlib.sha256(canonical).hexdigest()[:16])

    def _key_lock(self, key_id: str) -> threading.Lock:
        return self._key_locks[int(key_id[:8], 16) % KEY_LOCK_STRIPES]

    def _previous(self, user: User, token: RequestToken) -> Written | None:
        """The result of the request this key made before (main, or an open review branch);
        None when the key is new."""
        self.repo.refresh(max_age=0)
        sha = self.repo.find_message(f"{TRAILER_REQUEST}: {token.key_id}", changes=True)
        if sha is None:
            return None
        entry = self.repo.log(commit=sha, limit=1)[0]
        if entry.trailer(TRAILER_REQUEST) != token.line().split(": ", 1)[1]:
            raise InvalidRequest.field(
                "Idempotency-Key", "was used before for a different request; use a new key"
            )
        return self._result_of(user, sha)

    def _result_of(self, user: User, sha: str) -> Written | None:
        """What a replayed request answers, seen with the caller's rights today: nothing of
        a group the caller no longer belongs to."""
        entries = self.repo.log(commit=sha, limit=1)
        if not entries:
            return None
        group = entries[0].trailer(TRAILER_GROUP)
        if group:
            self.member_group(self.fresh_state(group=group), user, group)
        name = entries[0].trailer(TRAILER_DEPLOYMENT)
        deployment = self.state().deployments.get(name) if name else None
        change = None
        if self.review is not None and not self.repo.is_ancestor(sha, self.repo.head() or sha):
            change = self.review.change_of(sha)
        return Written(
            commit=CommitResult(sha=sha, changed=False), deployment=deployment, change=change
        )

    # ---- planning helpers ----------------------------------------------------------

    def _plan_create(
        self, snapshot: Snapshot, state: State, user: User, group_name: str, spec: DeploymentSpec
    ) -> Plan:
        group = self.member_group(state, user, group_name)
        self.check_name_free(state, group_name, spec.name)
        deployment = Deployment(
            group=group_name, id=self._unique_id(state), spec=spec, owner=user.name
        )
        deployment = self.with_volumes(state, deployment)
        self.check_images(state, group, deployment)
        quota.check(
            group,
            current=state.in_group(group_name),
            used=state.usage(group_name),
            before=None,
            after=deployment,
            sidecar=self.sidecar,
        )
        values = self.secrets.plan_env(snapshot, None, deployment, user=user.name, now=self.clock())
        deployment = values.deployment
        manifest = render.helmrelease(deployment, settings=self.settings)
        change = render.Change(
            message=f"Deploy {deployment.name} to {group_name}\n\n{_summary(spec)}",
            writes=(manifest, *values.writes),
            trailers=self.trailers("create", deployment),
        )
        return Plan(change=change, deployment=deployment)

    def _plan_replace(
        self,
        snapshot: Snapshot,
        state: State,
        before: Deployment,
        after: Deployment,
        action: str,
        *,
        user: str,
    ) -> Plan:
        group = state.groups[before.group]
        after = self.with_volumes(state, after)
        if after.spec.image != before.spec.image:
            self.check_images(state, group, after)
        quota.check(
            group,
            current=state.in_group(before.group),
            used=state.usage(before.group),
            before=before,
            after=after,
            sidecar=self.sidecar,
        )
        values = self.secrets.plan_env(snapshot, before, after, user=user, now=self.clock())
        after = values.deployment
        differences = models.spec_differences(before.spec, after.spec)
        differences += models.secret_differences(before, after)
        if action == "restart":
            subject = f"Restart {after.name}"
        elif list(differences) == [f"replicas {before.spec.replicas} -> {after.spec.replicas}"]:
            subject = f"Scale {after.name} to {after.spec.replicas} replicas"
        else:
            subject = f"Update {after.name}: " + ("; ".join(differences) or "no changes")
        change = render.Change(
            message=f"{subject}\n\n{_summary(after.spec)}",
            writes=(
                render.helmrelease(
                    after,
                    settings=self.settings,
                    current=snapshot.read(render.app_path(after.group, after.name)),
                    before=before,
                ),
                *values.writes,
            ),
            deletes=tuple(values.deletes),
            trailers=self.trailers(action, after),
        )
        return Plan(change=change, deployment=after)

    def with_volumes(self, state: State, deployment: Deployment) -> Deployment:
        """The deployment with its mounts checked against the group's volumes (Recreate when
        it mounts a ReadWriteOnce one)."""
        if not deployment.spec.volumes and not deployment.recreate:
            return deployment
        others = [d for d in state.in_group(deployment.group) if d.name != deployment.name]
        return mounts.check(deployment, state.volumes_in(deployment.group), others)

    def check_images(self, state: State, group: Group, deployment: Deployment) -> None:
        """A group over its storage quota may not deploy a new image of its own registry
        path (``storage.refuse_images_over_quota``): the images are what it must free."""
        if self.registry is None or not self.settings.storage.refuse_images_over_quota:
            return
        registry_settings = self.settings.registry
        own = f"{registry_settings.host}/{registry_settings.prefix(group.name)}"
        if not deployment.spec.image.startswith(own):
            return
        images, _ = self.image_storage(group.name)
        over = mounts.over_quota(
            group, volumes=mounts.volume_bytes(state.volumes_in(group.name)), images=images
        )
        if over:
            raise QuotaExceeded(
                f"storage quota of group {group.name} exceeded by {mounts.human(over)} "
                f"(volumes and registry images): new deployments of its images wait until "
                f"it frees space; {mounts.STORAGE_TAB}"
            )

    def _existing(self, state: State, name: str) -> Deployment:
        deployment = state.deployments.get(name)
        if deployment is None:
            raise NotFound(f"deployment {name!r} not found (deleted meanwhile?)")
        return deployment

    def check_name_free(self, state: State, group: str, app: str, *, but: str = "") -> None:
        for existing in state.in_group(group):
            if existing.app == app and existing.name != but:
                taken = f"a deployment named {app!r} exists in group {group} ({existing.name})"
                raise Conflict(
                    f"name: {taken}",
                    problems=[
                        FieldProblem("name", f"{taken[0].upper()}{taken[1:]}: pick another name.")
                    ],
                )

    def _unique_id(self, state: State) -> str:
        for _ in range(100):
            candidate = self.new_id()
            if not state.id_taken(candidate):
                return candidate
        raise Conflict("could not find a free deployment id; try again")

    def member_group(
        self, state: State, user: User, name: str, *, missing: str | None = None
    ) -> Group:
        """The group, if the user may see it. Anyone else gets the answer given for what
        does not exist (``missing``: the message then, e.g. naming the deployment asked
        for), so non-members learn neither that it exists nor who owns it."""
        group = state.groups.get(name)
        if group is None:
            record = f"{layout.group_dir(name)}/namespace.yaml"
            if user.admin and record in state.unreadable:  # no one else can be told apart
                raise Conflict(
                    f"group {name} cannot be read: {record}: {state.unreadable[record]}. "
                    "Fix the file in Git: until then the group's deployments cannot change"
                )
            raise NotFound(missing or f"group {name!r} not found")
        if not user.member_of(name, group.members):
            raise NotFound(missing or f"group {name!r} not found")
        return group

    def author(self, user: User) -> Author:
        return Author(name=user.name, email=user.email)

    def trailers(self, action: str, deployment: Deployment) -> dict[str, str]:
        return {
            TRAILER_ACTION: action,
            TRAILER_GROUP: deployment.group,
            TRAILER_DEPLOYMENT: deployment.name,
        }


def _merged_group(group: Group, patch: dict[str, Any]) -> dict[str, Any]:
    data = group.model_dump()
    for key, value in patch.items():
        if key == "quota" and isinstance(value, dict):
            data["quota"] = {**data["quota"], **value}
        else:
            data[key] = value
    return data


def _group_differences(before: Group, after: Group) -> list[str]:
    changes = []
    added = [m for m in after.members if m not in before.members]
    removed = [m for m in before.members if m not in after.members]
    if added:
        changes.append("members +" + ", +".join(added))
    if removed:
        changes.append("members -" + ", -".join(removed))
    if after.admins != before.admins:
        changes.append(f"admins {', '.join(after.admins) or '-'}")
    for name in ("cpu", "memory", "storage", "deployments"):
        old, new = getattr(before.quota, name), getattr(after.quota, name)
        if old != new:
            changes.append(f"quota {name} {old} -> {new}")
    if after.review != before.review:
        changes.append(f"review {after.review or 'installation default'}")
    return changes


def _masked(value: Any, digest: Callable[[str], str]) -> Any:
    """A request with every secret value replaced by its keyed digest."""
    if isinstance(value, dict):
        out = {k: _masked(v, digest) for k, v in value.items()}
        if out.get("secret") is True and isinstance(out.get("value"), str):
            out["value"] = digest(out["value"])
        return out
    if isinstance(value, list):
        return [_masked(item, digest) for item in value]
    return value


def _summary(spec: DeploymentSpec) -> str:
    parts = [
        f"image: {spec.image}",
        f"replicas: {spec.replicas}",
        f"port: {spec.port}",
        f"resources: {spec.resources.cpu} cpu, {spec.resources.memory} memory per pod",
        f"env: {', '.join(v.name for v in spec.env) or '-'}",
        f"expose: {'yes' if spec.expose else 'no'}",
    ]
    # only when set: the messages of deployments without them stay as they were
    if spec.health is not None:
        parts.append(f"health: http {spec.health.path}")
    if spec.command:
        parts.append(f"command: {models.argv_line(spec.command)}")
    if spec.args:
        parts.append(f"args: {models.argv_line(spec.args)}")
    if spec.autoscaling is not None:
        parts.append(f"autoscaling: {spec.autoscaling.describe()}")
    return "\n".join(parts)


def _folders_of(paths: Iterable[str]) -> set[str]:
    """The group folders the paths are in."""
    return {group for group in map(layout.folder_of, paths) if group is not None}


def _listed_groups(snapshot: Snapshot, state: State, new: str) -> list[str]:
    """What tenants/kustomization.yaml lists with a new group: the readable groups, and what
    it lists now that still exists, so a group whose record cannot be read stays listed
    (dropping it would make Flux prune the whole group); never a folder nobody listed."""
    try:
        index = snapshot.yaml(f"{layout.TENANTS_DIR}/kustomization.yaml")
    except Exception:  # unreadable: the readable groups are all that is known
        index = None
    listed = (index or {}).get("resources") if isinstance(index, dict) else None
    present = snapshot.folders()
    kept = {r for r in listed or [] if isinstance(r, str) and r in present}
    return sorted(kept | set(state.groups) | {new})


def _listed_apps(snapshot: Snapshot, group: str) -> list[str]:
    """apps/ entries of a group's kustomization.yaml (the earlier layout listed them)."""
    document = snapshot.yaml(f"{layout.group_dir(group)}/kustomization.yaml")
    resources = (document or {}).get("resources") if isinstance(document, dict) else None
    return [r for r in resources or [] if isinstance(r, str) and r.startswith("apps/")]


class _Source:
    """The repository as reading a state needs it."""

    def __init__(self, repo: GitRepo) -> None:
        self.repo = repo

    def read_blob(self, sha: str) -> bytes:
        return self.repo.read_blob(sha)

    def history(self, path: str, commit: str | None, limit: int) -> list[str | None]:
        return [change.after for change in self.repo.file_log(path, commit=commit, limit=limit)]
