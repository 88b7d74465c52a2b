"""A long randomized history of operations through the API (a hypothesis state machine), each
commit reconciled in the Flux stand-in under the multi-tenancy lockdown: no object of any
reachable repository state is refused or warned about by the API server (labels, names,
quantities, quota admission), every accepted change rolls out completely with the values
arriving byte-exact, only the releases a commit changed are upgraded, and no other pod
template moves. The cluster is an HTTP-level fake of the Kubernetes API (no API server can
run here)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from gitops_bridge import tools
from tests.bridgeutil import ALICE, HR, KS, Bridge, ready
from tests.kubefake import FakeKube

GROUP = {
    "name": "team-a",
    "members": ["alice"],
    "quota": {"cpu": "2", "memory": "3Gi", "storage": "10Gi", "deployments": 3},
}
NS = "group-team-a"
NAMES = st.sampled_from(["web", "api", "job", "db"])
CPUS = st.sampled_from(["50m", "100m", "0.25", "300m"])
MEMORIES = st.sampled_from(["64Mi", "128Mi", "0.5Gi", "200M", "1.5Gi"])
ENV_VALUES = st.one_of(
    st.sampled_from(["pa$$word", "$(HOME)", "$$(x)", "$(VALUE)", "cost: $5", "yes", "0123"]),
    st.text(alphabet=st.sampled_from(list("ab$()${}\\\"' \n:#é1")), max_size=12),
)
IMAGES = st.sampled_from(
    ["registry:5000/team-a/web:1.0", "registry:5000/team-a/web:2.0", "registry:5000/team-a/api:1"]
)


class History(RuleBasedStateMachine):
    """Users and an admin act through the API; Flux reconciles after every request."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="flux-history-")
        self.fake = FakeKube().start()
        self.bridge: Bridge
        self.templates: dict[str, Any] = {}
        self.upgrades: dict[str, int] = {}
        self.touched: set[str] = set()  # deployments the last request changed
        self.steps = 0
        self.slow_uninstalls = False

    @initialize()
    def start(self) -> None:
        helm, kubectl = tools.binary("helm"), tools.binary("kubectl")
        self.bridge = Bridge(Path(self._tmp.name) / "data", self.fake, helm, kubectl)
        answer = self.bridge.client.patch(f"/api/v1/groups/{GROUP['name']}", json=GROUP)
        assert answer.status_code == 200, answer.json
        self.reconcile()

    def teardown(self) -> None:
        self.fake.stop()
        self._tmp.cleanup()

    # ---- helpers ------------------------------------------------------------------------

    def deployments(self) -> dict[str, dict[str, Any]]:
        listing = self.bridge.client.get("/api/v1/groups/team-a/deployments", headers=ALICE)
        assert listing.status_code == 200, listing.json
        items = listing.json
        items = items["items"] if isinstance(items, dict) else items
        return {d["name"]: d for d in items}

    def reconcile(self) -> None:
        # uninstalls that take a while: a release deleted now is still there (terminating,
        # counted by the quota) when the next commit's apply runs
        self.bridge.flux.reconcile(hold_deletes=self.slow_uninstalls)
        self.steps += 1

    def act(self, method: str, path: str, body: Any = None, *, name: str = "") -> int:
        before = set(self.deployments())
        call = getattr(self.bridge.client, method)
        answer = call(f"/api/v1/{path}", json=body if body is not None else {}, headers=ALICE)
        assert answer.status_code < 500, answer.json
        if answer.status_code >= 400:
            assert answer.status_code in (404, 409, 422), answer.json
            assert answer.json["message"]  # type: ignore[index]
        self.touched = {name} if name else set()
        if answer.status_code == 201:
            self.touched |= set(self.deployments()) - before
        self.reconcile()
        return int(answer.status_code)

    def some(self, data: st.DataObject) -> str | None:
        names = sorted(self.deployments())
        return data.draw(st.sampled_from(names)) if names else None

    # ---- what people do -----------------------------------------------------------------

    @rule(
        name=NAMES,
        replicas=st.integers(0, 3),
        cpu=CPUS,
        memory=MEMORIES,
        expose=st.booleans(),
        value=ENV_VALUES,
        image=IMAGES,
    )
    def create(
        self, name: str, replicas: int, cpu: str, memory: str, expose: bool, value: str, image: str
    ) -> None:
        body = {
            "name": name,
            "image": image,
            "replicas": replicas,
            "resources": {"cpu": cpu, "memory": memory},
            "expose": expose,
            "env": [{"name": "VALUE", "value": value}],
        }
        self.act("post", "groups/team-a/deployments", body)

    @rule(data=st.data(), image=IMAGES, value=ENV_VALUES, memory=MEMORIES)
    def update(self, data: st.DataObject, image: str, value: str, memory: str) -> None:
        name = self.some(data)
        if name:
            body = {
                "image": image,
                "env": [{"name": "VALUE", "value": value}],
                "resources": {"memory": memory},
            }
            self.act("patch", f"deployments/{name}", body, name=name)

    @rule(data=st.data(), replicas=st.integers(0, 4))
    def scale(self, data: st.DataObject, replicas: int) -> None:
        name = self.some(data)
        if name:
            self.act("post", f"deployments/{name}/scale", {"replicas": replicas}, name=name)

    @rule(data=st.data())
    def restart(self, data: st.DataObject) -> None:
        name = self.some(data)
        if name:
            self.act("post", f"deployments/{name}/restart", name=name)

    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        name = self.some(data)
        if name:
            self.act("delete", f"deployments/{name}", name=name)

    @rule(cpu=st.sampled_from(["500m", "1", "2"]), deployments=st.integers(1, 4))
    def admin_changes_the_quota(self, cpu: str, deployments: int) -> None:
        quota = {"cpu": cpu, "deployments": deployments}
        answer = self.bridge.client.patch("/api/v1/groups/team-a", json={"quota": quota})
        assert answer.status_code == 200, answer.json
        self.touched = set()
        self.reconcile()

    @rule(slow=st.booleans())
    def helm_uninstalls_slowly(self, slow: bool) -> None:
        self.slow_uninstalls = slow

    # ---- what must hold after every commit ----------------------------------------------

    @invariant()
    def flux_applied_everything(self) -> None:
        if not self.steps:
            return
        fake = self.fake
        assert fake.warnings == [], fake.warnings
        for namespace, name in (("flux-system", "tenants"), (NS, "apps")):
            assert ready(fake.get(*KS, namespace, name))[0] == "True", ready(
                fake.get(*KS, namespace, name)
            )
        wanted = self.deployments()
        releases = {
            hr["metadata"]["name"]: hr
            for hr in fake.items(*HR, NS)
            if not hr["metadata"].get("deletionTimestamp")
        }
        assert set(releases) == set(wanted)
        for name, deployment in wanted.items():
            assert ready(releases[name])[0] == "True", ready(releases[name])
            self.check_rollout(name, deployment)
        failed = [e for e in fake.items("v1", "Event", NS) if e.get("reason") == "FailedCreate"]
        assert failed == [], [e["message"] for e in failed]

    def check_rollout(self, name: str, wanted: dict[str, Any]) -> None:
        fake = self.fake
        deployment = fake.get("apps/v1", "Deployment", NS, name)
        assert deployment is not None, name
        template = deployment["spec"]["template"]
        pods = self.bridge.pods(name)
        assert deployment["spec"]["replicas"] == wanted["replicas"] == len(pods), name
        hashes = {p["metadata"]["labels"]["pod-template-hash"] for p in pods}
        assert len(hashes) <= 1, f"{name}: rollout not finished ({hashes})"
        for pod in pods:
            assert pod["status"]["phase"] == "Running", pod["status"]
            env = self.bridge.flux.workloads.environment(NS, pod["metadata"]["name"], "app")
            assert env is not None
            assert env["VALUE"] == wanted["env"][0]["value"], (env["VALUE"], wanted["env"])
        upgrades = self.bridge.flux.upgrades[(NS, name)]
        if name in self.templates and name not in self.touched:
            assert template == self.templates[name], f"{name}'s pod template moved"
            assert upgrades == self.upgrades[name], f"{name} was upgraded by another change"
        self.templates[name], self.upgrades[name] = template, upgrades


History.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=16,
    deadline=None,
    # a failure prints every step it took; shrinking a history of reconciles takes minutes
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class TestHistory(History.TestCase):  # type: ignore[name-defined,misc]
    pass
