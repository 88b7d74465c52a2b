"""The use cases of gitops-bridge, without Flask: read state, create groups and deployments.

Every write is a function from the newest repository snapshot to a ``render.Change``;
``GitRepo.apply`` runs it, and runs it again on a fresher main if the push raced, so
validation and quota are always checked against what the commit lands on.
"""

from __future__ import annotations

import secrets
import string
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gitops_bridge import bootstrap, gitrepo, models, quantity, quota, render
from gitops_bridge.config import Settings
from gitops_bridge.errors import Conflict, Forbidden, NotFound
from gitops_bridge.gitrepo import Author, CommitResult, GitRepo, Snapshot
from gitops_bridge.identity import User
from gitops_bridge.models import Deployment, DeploymentSpec, Group
from gitops_bridge.render import layout

ID_ALPHABET = string.ascii_lowercase + string.digits
TRAILER_ACTION = "Gitops-Bridge-Action"
TRAILER_DEPLOYMENT = "Gitops-Bridge-Deployment"
TRAILER_GROUP = "Gitops-Bridge-Group"


def random_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(models.ID_LENGTH))


@dataclass
class State:
    """The desired state at one commit, as models."""

    commit: str | None
    groups: dict[str, Group] = field(default_factory=dict)
    deployments: dict[str, Deployment] = field(default_factory=dict)  # by {app}-{id}
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why

    def in_group(self, group: str) -> list[Deployment]:
        return [d for d in self.deployments.values() if d.group == group]

    def ids(self) -> set[str]:
        return {d.id for d in self.deployments.values()}


@dataclass(frozen=True)
class GroupView:
    group: Group
    usage: quota.Usage
    deployments: int


@dataclass(frozen=True)
class Written:
    """The result of a write: the deployment/group as committed and the commit."""

    commit: CommitResult
    deployment: Deployment | None = None
    group: Group | None = None


class Service:
    def __init__(self, settings: Settings, repo: GitRepo, *, new_id: Callable[[], str] = random_id):
        self.settings = settings
        self.repo = repo
        self.new_id = new_id
        self.sidecar = quota.Sidecar(
            cpu=quantity.parse(settings.frp.cpu), memory=quantity.parse(settings.frp.memory)
        )
        self._states: OrderedDict[str, State] = OrderedDict()
        self._parsed: dict[str, Any] = {}

    # ---- reading ---------------------------------------------------------------

    def state(self, snapshot: Snapshot | None = None) -> State:
        if snapshot is None:
            self.repo.refresh()
            snapshot = self.repo.snapshot()
        key = snapshot.commit or ""
        cached = self._states.get(key)
        if cached is not None:
            return cached
        state = State(commit=snapshot.commit)
        for path, blob in snapshot.under(layout.TENANTS_DIR).items():
            parts = path.split("/")
            try:
                if len(parts) == 3 and parts[2] == "namespace.yaml":
                    group = self._parse(blob, render.parse_group, snapshot, path)
                    state.groups[group.name] = group
                elif len(parts) == 4 and parts[2] == layout.APPS_DIR and path.endswith(".yaml"):
                    deployment = self._parse(blob, render.parse_helmrelease, snapshot, path)
                    state.deployments[deployment.name] = deployment
            except Exception as exc:  # a hand-edited file we cannot read: show, don't crash
                state.unreadable[path] = f"{type(exc).__name__}: {exc}"
        self._states[key] = state
        while len(self._states) > 4:
            self._states.popitem(last=False)
        return state

    def _parse(self, blob: str, parser: Callable[[Any], Any], snapshot: Snapshot, path: str) -> Any:
        key = f"{parser.__name__}:{blob}"
        if key not in self._parsed:
            self._parsed[key] = parser(snapshot.yaml(path))
        return self._parsed[key]

    def groups(self, user: User) -> list[GroupView]:
        state = self.state()
        views = []
        for group in sorted(state.groups.values(), key=lambda g: g.name):
            if not user.member_of(group.name, group.members):
                continue
            specs = [d.spec for d in state.in_group(group.name)]
            views.append(
                GroupView(
                    group=group,
                    usage=quota.usage(specs, sidecar=self.sidecar),
                    deployments=len(specs),
                )
            )
        return views

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

    def group(self, user: User, name: str) -> Group:
        return self._member_group(self.fresh_state(group=name), user, name)

    def deployments(self, user: User, group: str | None = None) -> list[Deployment]:
        state = self.fresh_state(group=group)
        if group is not None:
            self._member_group(state, user, group)
        result = []
        for deployment in state.deployments.values():
            if group is not None and deployment.group != group:
                continue
            owner_group = state.groups.get(deployment.group)
            members = owner_group.members if owner_group else []
            if user.member_of(deployment.group, members):
                result.append(deployment)
        return sorted(result, key=lambda d: (d.group, d.app, d.id))

    def deployment(self, user: User, name: str) -> Deployment:
        state = self.fresh_state(deployment=name)
        deployment = state.deployments.get(name)
        if deployment is None:
            raise NotFound(f"deployment {name!r} not found")
        self._member_group(state, user, deployment.group)
        return deployment

    def url(self, deployment: Deployment) -> str:
        return f"https://{deployment.name}.{self.settings.domain}"

    # ---- writing ---------------------------------------------------------------

    def create_group(self, user: User, data: object) -> Written:
        if not user.admin:
            raise Forbidden("only platform admins may create groups")
        group = models.parse_group(data)

        def build(snapshot: Snapshot) -> render.Change:
            state = self.state(snapshot)
            if group.name in state.groups:
                raise Conflict(f"name: group {group.name!r} exists already")
            writes = render.group_files(group, settings=self.settings)
            files = [m.path.rsplit("/", 1)[1] for m in writes]
            writes.append(render.group_kustomization(group.name, files=files))
            writes.append(render.tenants_kustomization([*state.groups, group.name]))
            return render.Change(
                message=f"Create group {group.name}",
                writes=tuple(writes),
                trailers={TRAILER_ACTION: "create-group", TRAILER_GROUP: group.name},
            )

        return Written(commit=self.repo.apply(build, author=self._author(user)), group=group)

    def create_deployment(self, user: User, group_name: str, data: object) -> Written:
        spec = models.parse_deployment(data, limits=self.settings.limits)
        self._member_group(self.fresh_state(group=group_name), user, group_name)  # fail fast
        created: list[Deployment] = []

        def build(snapshot: Snapshot) -> render.Change:
            change, deployment = self._plan_create(snapshot, user, group_name, spec)
            created[:] = [deployment]
            return change

        commit = self.repo.apply(build, author=self._author(user))
        return Written(commit=commit, deployment=created[0])

    def preview_deployment(self, user: User, group_name: str, data: object) -> render.Change:
        """The change a create request would commit now, without writing anything."""
        spec = models.parse_deployment(data, limits=self.settings.limits)
        self.repo.refresh()
        change, _ = self._plan_create(self.repo.snapshot(), user, group_name, spec)
        return change

    def _plan_create(
        self, snapshot: Snapshot, user: User, group_name: str, spec: DeploymentSpec
    ) -> tuple[render.Change, Deployment]:
        state = self.state(snapshot)
        group = self._member_group(state, user, group_name)
        for existing in state.in_group(group_name):
            if existing.app == spec.name:
                raise Conflict(
                    f"name: a deployment named {spec.name!r} exists in group "
                    f"{group_name} ({existing.name})"
                )
        deployment = Deployment(
            group=group_name, id=self._unique_id(state), spec=spec, owner=user.name
        )
        quota.check(
            group,
            current=[d.spec for d in state.in_group(group_name)],
            before=None,
            after=spec,
            sidecar=self.sidecar,
        )
        manifest = render.helmrelease(deployment, settings=self.settings)
        change = render.Change(
            message=f"Deploy {deployment.name} to {group_name}\n\n{_summary(spec)}",
            writes=(manifest, self._group_index(snapshot, group_name, add=manifest.path)),
            trailers=self._trailers("create", deployment),
        )
        return change, deployment

    # ---- helpers ---------------------------------------------------------------

    def _unique_id(self, state: State) -> str:
        taken = state.ids()
        for _ in range(100):
            candidate = self.new_id()
            if candidate not in taken:
                return candidate
        raise Conflict("could not find a free deployment id; try again")

    def _group_index(
        self, snapshot: Snapshot, group: str, *, add: str | None = None, remove: str | None = None
    ) -> render.Manifest:
        base = layout.group_dir(group) + "/"
        files = {
            path.removeprefix(base)
            for path in snapshot.under(base)
            if path.endswith(".yaml") and not path.endswith("/kustomization.yaml")
        }
        if add:
            files.add(add.removeprefix(base))
        if remove:
            files.discard(remove.removeprefix(base))
        return render.group_kustomization(group, files=files)

    def _member_group(self, state: State, user: User, name: str) -> Group:
        group = state.groups.get(name)
        if group is None:
            raise NotFound(f"group {name!r} not found")
        if not user.member_of(name, group.members):
            raise Forbidden(f"{user.name} is not a member of group {name}")
        return group

    def _author(self, user: User) -> Author:
        return Author(name=user.name, email=user.email)

    def _trailers(self, action: str, deployment: Deployment) -> dict[str, str]:
        return {
            TRAILER_ACTION: action,
            TRAILER_GROUP: deployment.group,
            TRAILER_DEPLOYMENT: deployment.name,
        }


def open_service(settings: Settings) -> Service:
    """The service on its working clone; with no repo_url, an embedded remote under data_dir.

    A new embedded remote is initialised from repo-template/ and, when configured, gets
    a demo group whose members are the platform admins.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    embedded = settings.embedded_remote
    if embedded is not None:
        gitrepo.init_bare(embedded, branch=settings.branch)
    committer = Author(name=settings.committer_name, email=settings.committer_email)
    repo = GitRepo(
        path=settings.clone_dir,
        url=settings.remote_url,
        branch=settings.branch,
        committer=committer,
        push_attempts=settings.push_attempts,
        fetch_interval=settings.fetch_interval,
    )
    repo.fetch()
    service = Service(settings, repo)
    if embedded is not None and repo.head() is None:
        initial = bootstrap.initial_change(cluster=settings.cluster)
        repo.apply(lambda snap: initial if snap.commit is None else None, author=committer)
        if settings.demo_group:
            admin = User(
                name=settings.admins[0] if settings.admins else "admin",
                email=settings.committer_email,
                admin=True,
            )
            service.create_group(admin, DEMO_GROUP | {"members": list(settings.admins)})
    return service


DEMO_GROUP: dict[str, Any] = {
    "name": "demo",
    "quota": {"cpu": "4", "memory": "8Gi", "storage": "20Gi", "deployments": 10},
}


def _summary(spec: DeploymentSpec) -> str:
    parts = [
        f"image: {spec.image}",
        f"replicas: {spec.replicas}",
        f"port: {spec.port}",
        f"resources: {spec.resources.cpu} cpu, {spec.resources.memory} memory per pod",
        f"env: {', '.join(v.name for v in spec.env) or '-'}",
        f"expose: {'yes' if spec.expose else 'no'}",
    ]
    return "\n".join(parts)
