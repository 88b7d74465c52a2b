"""``scripts/run --demo``: gitops-bridge against a SIMULATED cluster, to see it move without one.

This is test code put to a second use, not part of the product (it is not in the package nor
in the image). What is real: the app (``gitops-bridge serve``'s server and settings), its
embedded GitOps remote with real commits, git, helm and kubectl, and a local Docker registry
(Debian's ``docker-registry``, as the tests run it) holding a few small sample images. What
is simulated: Kubernetes and Flux. ``FakeKube`` (``tests/kubefake.py``) serves the Kubernetes
API over HTTP and the app reads it through a kubeconfig as it would a cluster; a background
thread plays Flux with ``FluxStandIn`` (``tests/fluxstandin.py``, with the controller and
kubelet stand-ins) whenever main moves or the app asks for a reconcile, checking every few
seconds, delivers Flux's events to the app, and keeps the simulated pods' usage, logs and
crash-loop events moving. Every page says "Simulated cluster" (``kubernetes.simulated``).

The group ``demo`` gets a running deployment (``web``, exposed, two versions in its history),
a crash-looping one (``worker``: the stand-in's ``crashloop``), one killed for its memory
(``batch``: ``oomkilled``) and one whose upgrade failed (``api``: ``failed-upgrade``, 1.0
still running). Each start is a fresh demo: the simulated
cluster lives in memory, so the data directory is made anew (only one this module made).
Ctrl-C stops the server, the threads, the fake API server and the registry.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import math
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask

from gitops_bridge import config, monitor, quantity, tools
from gitops_bridge.identity import User
from gitops_bridge.runtime import Runtime
from gitops_bridge.webapp import create_app
from tests import kubelet
from tests.fluxstandin import RELEASE_NAME, FluxStandIn
from tests.kubefake import FakeKube
from tests.registryutil import RegistryServer, layer, push_image, running_registry

log = logging.getLogger("demo")

GROUP = "demo"
NAMESPACE = f"group-{GROUP}"
MARKER = "SIMULATED-CLUSTER-DEMO"  # a data directory holding this file may be made anew
INTERVAL = 3.0  # seconds between the simulation's steps
BACK_OFF = 40.0  # seconds between two restarts of a crash-looping container (the kubelet's
# back-off doubles from 10 s up to 5 minutes; a steady pace shows it without the wait)
POLL = 2.0  # the app's poll interval
REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
DEPLOYMENT = ("apps/v1", "Deployment")
WATCHED = (
    ("helm.toolkit.fluxcd.io/v2", "HelmRelease"),
    ("kustomize.toolkit.fluxcd.io/v1", "Kustomization"),
    ("source.toolkit.fluxcd.io/v1", "GitRepository"),
)
# (repository, tag, days old, bytes of content): small images, with ages and sizes to show
IMAGES = (
    ("web", "1.0", 9, 40_000),
    ("web", "1.1", 2, 42_000),
    ("worker", "1.0", 5, 25_000),
    ("api", "1.0", 7, 60_000),
    ("api", "2.0", 1, 64_000),
    ("batch", "1.0", 3, 30_000),
)
PATHS = ("/", "/healthz", "/api/items", "/api/items/42", "/static/app.js")


@dataclass
class Demo:
    """The app, its settings and runtime, the simulated cluster and the registry."""

    settings: config.Settings
    app: Flask
    rt: Runtime
    fake: FakeKube
    flux: FluxStandIn
    registry: RegistryServer
    interval: float = INTERVAL
    scenarios: dict[str, str] = field(default_factory=dict)  # HelmRelease name -> scenario
    seeded: dict[str, str] = field(default_factory=dict)  # app -> deployment name
    errors: list[str] = field(default_factory=list)  # steps that failed (logged too)
    _applied: tuple[str, ...] = ()
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _random: random.Random = field(default_factory=lambda: random.Random(7))
    _restarted: dict[str, float] = field(default_factory=dict)  # Deployment uid -> when

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    # ---- Flux, on a schedule --------------------------------------------------------------

    def start(self) -> None:
        """The simulation's thread and the app's own poller (as ``serve`` starts it)."""
        self._thread = threading.Thread(target=self._run, name="demo-simulation", daemon=True)
        self._thread.start()
        self.rt.start_background()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None
        self.rt.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.step()
            except Exception as exc:  # a step that failed is tried again at the next one
                if not self._stop.is_set():
                    self.errors.append(repr(exc))
                    log.exception("simulation step failed")

    def step(self) -> None:
        """Reconcile when main moved or the app asked Flux to (a push, Retry); then time passes
        for the pods: usage changes, logs grow, a crash-looping container backs off again."""
        if self.provision() or self._wanted() != self._applied:
            self.reconcile()
        self.deliver()
        self.liven()

    def reconcile(self) -> str:
        commit = self.flux.reconcile(scenario=dict(self.scenarios))
        self._applied = self._wanted()
        return commit

    def _wanted(self) -> tuple[str, ...]:
        """What a reconcile answers to: main's commit and every reconcile request made."""
        remote = self.settings.embedded_remote
        assert remote is not None
        head = subprocess.run(
            ["git", "--git-dir", str(remote), "rev-parse", f"refs/heads/{self.settings.branch}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        requests = sorted(
            f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}={requested}"
            for kind in WATCHED
            for obj in self.fake.items(*kind)
            if (requested := (obj["metadata"].get("annotations") or {}).get(REQUESTED_AT))
        )
        return (head, *requests)

    def provision(self) -> bool:
        """What a platform operator makes out of band in each group namespace: the frpc
        credentials and the key the group's Flux Provider signs its events with; whether
        anything was made (a new group's pods then start at the next reconcile)."""
        token = self.settings.kubernetes.events_token.get_secret_value()
        made = False
        for ns in self.fake.items("v1", "Namespace"):
            name = ns["metadata"]["name"]
            if not name.startswith("group-") or ns["metadata"].get("deletionTimestamp"):
                continue
            if self.fake.get("v1", "Secret", name, "frp-token") is None:
                self.fake.apply(kubelet.frp_token(name))
                made = True
            secret = self.settings.flux.events_secret
            if self.fake.get("v1", "Secret", name, secret) is None:
                made = True
                key = monitor.events_key(token, name)
                self.fake.apply(
                    {
                        "apiVersion": "v1",
                        "kind": "Secret",
                        "metadata": {"name": secret, "namespace": name},
                        "data": {"token": base64.b64encode(key.encode()).decode()},
                    }
                )
        return made

    def deliver(self) -> None:
        """notification-controller: the recorded events to the app's Flux events endpoint."""
        self.flux.deliver(self._post)

    def _post(self, address: str, headers: dict[str, str], body: bytes) -> None:
        request = urllib.request.Request(
            f"{self.url}/api/v1/flux/events", data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:  # not up yet, or stopping: dropped
            log.debug("event to %s not delivered: %s", address, exc)

    # ---- time passing for the pods --------------------------------------------------------

    def liven(self) -> None:
        """Every ``BACK_OFF`` seconds the kubelet syncs a crash-looping Deployment's pods again
        (one more restart, BackOff event and crash log); a healthy pod's usage moves and its
        log grows at every step."""
        moment = time.time()
        for deployment in self.fake.items(*DEPLOYMENT):
            meta = deployment["metadata"]
            if not meta["namespace"].startswith("group-") or meta.get("deletionTimestamp"):
                continue
            pods = self.flux.workloads.pods_of(deployment)
            crashing = sorted({kubelet.health_of(pod) for pod in pods} - {"ok"})
            if crashing:
                if moment - self._restarted.setdefault(meta["uid"], moment) >= BACK_OFF:
                    self._restarted[meta["uid"]] = moment
                    release = (meta.get("annotations") or {}).get(RELEASE_NAME, meta["name"])
                    self.flux.workloads.roll(deployment, release=release, health=crashing[0])
                continue
            for pod in pods:
                if (pod.get("status") or {}).get("phase") == "Running":
                    self._usage(pod, moment)
                    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
                    self.fake.append_log(namespace, name, "app", self._request_line())

    def _usage(self, pod: dict[str, Any], moment: float) -> None:
        """A slow wave per pod under the limits, as metrics-server would report it."""
        phase = zlib.crc32(pod["metadata"]["name"].encode()) % 360
        wave = (1 + math.sin(math.radians(phase) + moment / 40)) / 2
        usage = {}
        for container in pod["spec"]["containers"]:
            resources = container.get("resources") or {}
            limits = resources.get("limits") or resources.get("requests") or {}
            cpu = quantity.parse(limits.get("cpu", "100m")).value
            memory = quantity.parse(limits.get("memory", "128Mi")).value
            share = 0.1 + 0.35 * wave if container["name"] == "app" else 0.05
            usage[container["name"]] = {
                "cpu": f"{int(cpu * 10**9 * share)}n",
                "memory": f"{int(memory * (0.3 + share / 2) / 1024)}Ki",
            }
        self.fake.set_metrics(pod["metadata"]["namespace"], pod["metadata"]["name"], usage)

    def _request_line(self) -> str:
        path = self._random.choice(PATHS)
        status = 200 if self._random.random() > 0.05 else 404
        return f"GET {path} {status} {self._random.uniform(0.4, 12):.1f}ms"


# ---- setting it up ------------------------------------------------------------------------


def fresh_directory(path: Path) -> Path:
    """Make ``path`` anew; refuse to empty a directory this module did not make."""
    path = path.resolve()
    if path.exists():
        if any(path.iterdir()) and not (path / MARKER).is_file():
            raise SystemExit(f"{path} is not empty and not a demo's directory: choose another")
        shutil.rmtree(path)
    path.mkdir(parents=True)
    (path / MARKER).write_text(
        "made by scripts/run --demo (tests/demo.py); made anew at each start\n", encoding="utf-8"
    )
    return path


def push_samples(registry: RegistryServer) -> None:
    """A few small images of group demo, of different ages and sizes."""
    now = datetime.now(UTC)
    for repo, tag, days, size in IMAGES:
        content = random.Random(f"{repo}:{tag}").randbytes(size)
        created = (now - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
        push_image(
            registry.url,
            f"{GROUP}/{repo}",
            tag,
            layers=[layer({"app/server": content, "app/VERSION": f"{tag}\n".encode()})],
            created=created,
        )


def seed(demo: Demo, image: str) -> None:
    """The demo deployments, committed as the platform admin through the service, and
    reconciled: each one's first version, then web's upgrade (applied) and api's (failing:
    1.0 keeps running)."""
    svc = demo.rt.svc
    admin = User(name=demo.settings.admins[0], email=demo.settings.committer_email, admin=True)

    def create(app: str, **fields: Any) -> str:
        body = {"name": app, "image": f"{image}/{app}:1.0", **fields}
        written = svc.create_deployment(admin, GROUP, body)
        assert written.deployment is not None
        demo.seeded[app] = written.deployment.name
        return written.deployment.name

    web = create("web", replicas=2, expose=True, port=8080)
    demo.scenarios[create("worker", replicas=1)] = "crashloop"
    api = create("api", replicas=1, port=8080)
    demo.scenarios[create("batch", replicas=1, resources={"memory": "64Mi"})] = "oomkilled"
    demo.reconcile()
    svc.update_deployment(admin, web, {"image": f"{image}/web:1.1"})
    svc.update_deployment(admin, api, {"image": f"{image}/api:2.0"})
    demo.scenarios[api] = "failed-upgrade"
    demo.reconcile()


@contextlib.contextmanager
def simulation(
    data_dir: Path, *, host: str = "127.0.0.1", port: int = 8080, interval: float = INTERVAL
) -> Iterator[Demo]:
    """Everything but the HTTP server: the registry with its images, the simulated cluster,
    the app (not yet serving) seeded and reconciled once. ``start()`` sets time going."""
    root = fresh_directory(data_dir)
    with contextlib.ExitStack() as stack:
        registry = stack.enter_context(running_registry(root / "registry"))
        push_samples(registry)
        fake = stack.enter_context(FakeKube())
        fake.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        kubeconfig = fake.kubeconfig(root / "kubeconfig")
        url = f"http://{host}:{port}"
        # usage graphs: a sample every 5 s rather than 30, so they fill within minutes
        graphs = {"usage": {"step": 5}} if "usage" in config.Settings.model_fields else {}
        settings = config.load(
            host=host,
            port=port,
            data_dir=root / "bridge",
            kubernetes={
                "mode": "kubeconfig",
                "kubeconfig": str(kubeconfig),
                "poll_interval": POLL,
                "simulated": True,
                "events_token": secrets.token_hex(16),
            },
            registry={"url": registry.url, "host": f"127.0.0.1:{registry.port}"},
            flux={"events_url": f"{url}/api/v1/flux/events"},
            **graphs,
        )
        app = create_app(settings)
        rt: Runtime = app.extensions["gitops_bridge.runtime"]
        stack.callback(rt.stop)
        remote = settings.embedded_remote
        assert remote is not None
        flux = FluxStandIn(
            fake, remote=remote, helm=tools.binary("helm"), kubectl=tools.binary("kubectl")
        )
        demo = Demo(
            settings=settings,
            app=app,
            rt=rt,
            fake=fake,
            flux=flux,
            registry=registry,
            interval=interval,
        )
        demo.provision()
        demo.reconcile()  # Flux's objects exist before the first push asks them to reconcile
        seed(demo, f"127.0.0.1:{registry.port}/{GROUP}")
        stack.callback(demo.stop)
        yield demo


# ---- the command --------------------------------------------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the demo as Ctrl-C does


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/run --demo", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--data-dir", type=Path, default=Path(".gitops-bridge-demo"))
    parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds a step")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line every poll otherwise
    # Ctrl-C even where the shell started us with SIGINT ignored (a background job)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    from gitops_bridge import serving

    print("starting the demo: a local registry, a simulated cluster, the app ...", flush=True)
    try:
        with simulation(
            args.data_dir, host=args.host, port=args.port, interval=args.interval
        ) as demo:
            server = serving.create(demo.app, demo.settings)
            demo.start()
            print(f"gitops-bridge on {demo.url}  (SIMULATED cluster: FakeKube + Flux stand-in)")
            print(f"registry {demo.registry.url}: images under {GROUP}/")
            print(f"GitOps remote {demo.settings.embedded_remote}; Ctrl-C stops everything")
            print("seeded in group demo: " + ", ".join(demo.seeded.values()), flush=True)
            try:
                server.run()  # until Ctrl-C (waitress returns on KeyboardInterrupt)
            finally:
                server.close()
    except KeyboardInterrupt:
        pass
    print("demo stopped: server, simulation, fake cluster and registry", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
