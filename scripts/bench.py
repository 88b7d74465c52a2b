"""Benchmarks of gitops-bridge's hot paths; prints medians. Run with scripts/bench.

Each figure is measured on real parts (git remotes on local disk, the real service);
nothing here asserts a time: compare the figures between commits.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

from gitops_bridge import config, gitrepo, models, render, runtime, service
from gitops_bridge.identity import User

ADMIN = User(name="admin", email="admin@example.com", admin=True)


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:8.2f} ms"


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def bench_render(repeat: int) -> None:
    settings = config.Settings()
    spec = models.parse_deployment(
        {
            "name": "web",
            "image": "registry:5000/a/web:1",
            "replicas": 2,
            "expose": True,
            "env": [{"name": f"V{i}", "value": f"value {i}\nline"} for i in range(10)],
        }
    )
    deployment = models.Deployment(group="g", id="abc123", spec=spec)
    samples = timed(lambda: render.helmrelease(deployment, settings=settings), repeat)
    print(f"render one HelmRelease (10 env vars)            {median_ms(samples)}")


def padded_service(root: Path, files: int) -> service.Service:
    settings = config.load(data_dir=root / "data", fetch_interval=3600)
    svc = runtime.open_service(settings)
    padding = tuple(
        render.Manifest(f"padding/{i // 500}/f{i}.yaml", f"n: {i}\n") for i in range(files)
    )
    svc.repo.apply(lambda s: render.Change("padding", writes=padding), author=svc.repo.committer)
    svc.create_group(
        ADMIN,
        {"name": "bench", "quota": {"cpu": "1000", "memory": "1000Gi", "deployments": 10_000}},
    )
    return svc


def api_admin() -> dict[str, str]:
    """Headers of a platform admin behind the default (local) identity proxy."""
    return {"X-Forwarded-User": "root", "X-Forwarded-Groups": "platform-admins"}


def bench_scale(size: int, repeat: int, profile: bool) -> dict[str, float]:
    """Real deployments in groups of 100 (scripts/benchrepo.py), one service on a file://
    remote; run in a fresh process per size so RSS and caches start from nothing."""
    import cProfile
    import pstats

    import benchrepo

    from gitops_bridge import webapp

    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        remote = root / "remote.git"
        settings = config.load(
            data_dir=root / "data", repo_url=remote.as_uri(), fetch_interval=3600
        )
        start = time.perf_counter()
        generated = benchrepo.generate(remote, size, settings)
        figures["generate_s"] = time.perf_counter() - start
        figures["files"] = generated.files
        figures["rss_before_mib"] = rss_mib()

        # start-up to the first answer with data: clone, service, app, one deployment's GET
        start = time.perf_counter()
        rt = runtime.open_runtime(settings)
        app = webapp.create_app(settings, rt=rt)
        client = app.test_client()
        answer = client.get(f"/api/v1/deployments/{generated.deployments[-1]}", headers=api_admin())
        figures["startup_s"] = time.perf_counter() - start
        assert answer.status_code == 200, answer.json
        figures["rss_start_mib"] = rss_mib()
        svc = rt.svc
        state = svc.state()
        assert len(state.deployments) == size and not state.unreadable, state.unreadable

        # the full state build (what start-up and every fetched foreign commit pay)
        builds = []
        for _ in range(1 if size >= 10_000 else 3):
            svc._states.clear()
            builds.append(timed(svc.state, 1)[0])
        figures["state_s"] = statistics.median(builds)

        # every group with its usage (the service), then every deployment through the API
        figures["groups_svc_s"] = statistics.median(timed(lambda: svc.groups(ADMIN), 3))
        walks: list[tuple[int, int]] = []  # (pages, bytes) of each walk

        def api_page(url: str) -> tuple[bytes, str | None]:
            """One page and the path of the next (``Link: <...>; rel="next"``), if any."""
            response = client.get(url, headers=api_admin())
            assert response.status_code == 200, response.status_code
            link = response.headers.get("Link", "")
            found = re.search(r'<([^>]+)>;\s*rel="next"', link)
            if found is None:
                return response.data, None
            parts = urllib.parse.urlsplit(found.group(1))
            return response.data, parts.path + (f"?{parts.query}" if parts.query else "")

        def api_walk() -> None:
            url: str | None = "/api/v1/deployments"
            pages = size_bytes = 0
            while url is not None:
                data, url = api_page(url)
                pages += 1
                size_bytes += len(data)
            walks.append((pages, size_bytes))

        first = timed(lambda: api_page("/api/v1/deployments"), 3)
        figures["list_api_page_s"] = statistics.median(first)
        figures["list_api_s"] = statistics.median(timed(api_walk, 1 if size >= 10_000 else 3))
        figures["list_api_pages"], all_bytes = walks[-1]
        figures["list_api_mb"] = all_bytes / 1e6
        figures["rss_reads_mib"] = rss_mib()

        # one create, one client, into a full group of 100
        group = generated.groups[len(generated.groups) // 2]
        counter = iter(range(10**6))

        def create() -> None:
            n = next(counter)
            svc.create_deployment(ADMIN, group, {"name": f"bench{n}", "image": "nginx"})

        create()  # warm: the state of the new commit
        pushes: list[float] = []
        push = svc.repo._push

        def timed_push(sha: str, *, ref: str | None = None) -> None:
            begin = time.perf_counter()
            try:
                push(sha, ref=ref)
            finally:
                pushes.append(time.perf_counter() - begin)

        svc.repo._push = timed_push  # type: ignore[method-assign]
        creates = timed(create, repeat)
        svc.repo._push = push  # type: ignore[method-assign]
        figures["create_s"] = statistics.median(creates)
        figures["push_s"] = statistics.median(pushes)
        figures["create_local_s"] = statistics.median(
            c - p for c, p in zip(creates, pushes, strict=True)
        )

        # the limit: the writer's own tree and commit writing for the same change
        repo = svc.repo
        spec = models.parse_deployment({"name": "limit", "image": "nginx"})
        manifest = render.helmrelease(
            models.Deployment(group=group, id="lim000", spec=spec), settings=settings
        )
        head = repo.head()
        tree = repo._tree_of(head)
        limits = []
        for n in range(repeat):
            change = {manifest.path.replace("lim000", f"lim{n:03d}"): manifest.data}
            begin = time.perf_counter()
            new_tree = repo._write_tree(tree, change)
            repo._write_commit(tree=new_tree, parent=head, author=repo.committer, message="limit")
            limits.append(time.perf_counter() - begin)
        figures["limit_s"] = statistics.median(limits)
        figures["rss_end_mib"] = rss_mib()

        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(create)
            print(f"--- profile of one create, {size} deployments (cumulative) ---")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return figures


SCALE_ROWS: tuple[tuple[str, Callable[[dict[str, float]], str]], ...] = (
    ("repository: files / generated in", lambda f: f"{f['files']:.0f} / {f['generate_s']:.1f} s"),
    ("create, 1 client, p50", lambda f: f"{f['create_s'] * 1000:.0f} ms"),
    ("limit: changed trees + commit (writer)", lambda f: f"{f['limit_s'] * 1000:.1f} ms"),
    ("... of it the push (git push, file://)", lambda f: f"{f['push_s'] * 1000:.0f} ms"),
    (
        "create without the push vs limit",
        lambda f: f"{f['create_local_s'] * 1000:.1f} ms, {f['create_local_s'] / f['limit_s']:.1f}x",
    ),
    ("start-up to first answer with data", lambda f: f"{f['startup_s']:.1f} s"),
    (
        "RSS after start / after reads",
        lambda f: f"{f['rss_start_mib']:.0f} / {f['rss_reads_mib']:.0f} MiB",
    ),
    ("svc.state(), full build (caches emptied)", lambda f: f"{f['state_s']:.2f} s"),
    ("svc.groups(admin), all with usage", lambda f: f"{f['groups_svc_s'] * 1000:.0f} ms"),
    (
        "GET /api/v1/deployments as admin: first page",
        lambda f: f"{f['list_api_page_s'] * 1000:.0f} ms",
    ),
    (
        "... every page (following Link: next)",
        lambda f: (
            f"{f['list_api_s']:.2f} s, {f['list_api_pages']:.0f} pages, {f['list_api_mb']:.1f} MB"
        ),
    ),
)


def scale_table(sizes: list[int], repeat: int, profile: bool) -> None:
    """Each size in a child process; the figures as one table (medians)."""
    import json

    results: dict[int, dict[str, float]] = {}
    for size in sizes:
        sys.stdout.flush()
        command = [
            sys.executable,
            __file__,
            "--scale-child",
            str(size),
            "--repeat",
            str(min(repeat, 10)),
        ]
        if profile and size == max(sizes):
            command.append("--profile")
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
        for line in done.stdout.splitlines():
            if line.startswith("FIGURES "):
                results[size] = json.loads(line.removeprefix("FIGURES "))
            else:
                print(line)
    header = "| what | " + " | ".join(f"{size:,}" for size in sizes) + " |"
    print(header)
    print("|---|" + "---|" * len(sizes))
    for label, show in SCALE_ROWS:
        print(f"| {label} | " + " | ".join(show(results[size]) for size in sizes) + " |")


def bench_secrets(repeat: int) -> None:
    """A create and an update of one key with three secret values (encrypt, age stanzas for
    the cluster, the bridge and the group; the update decrypts the stored file) against the
    same with plain values, on one service."""
    from gitops_bridge import sops

    with tempfile.TemporaryDirectory() as tmp:
        settings = config.load(
            data_dir=Path(tmp) / "data",
            fetch_interval=3600,
            secrets={"age_recipients": [sops.public_key(sops.generate_identity())]},
        )
        svc = runtime.open_service(settings)
        svc.create_group(
            ADMIN,
            {"name": "bench", "quota": {"cpu": "1000", "memory": "1000Gi", "deployments": 10_000}},
        )
        figures: dict[str, list[float]] = {}
        counter = iter(range(100_000))
        for kind, secret in (("plain", False), ("secret", True)):

            def env(value: str, flag: bool = secret) -> list[dict[str, object]]:
                return [
                    {
                        "name": f"KEY_{k}",
                        "value": f"{value}-{k}",
                        **({"secret": True} if flag else {}),
                    }
                    for k in range(3)
                ]

            def create(k: str = kind) -> object:
                body = {
                    "name": f"{k}{next(counter)}",
                    "image": "registry:5000/b/a:1",
                    "env": env("v"),
                }
                return svc.create_deployment(ADMIN, "bench", body)

            figures[f"create, 3 {kind} values"] = timed(create, repeat)
            name = create().deployment.name  # type: ignore[attr-defined]

            def update(n: str = name, flag: bool = secret) -> object:
                kept = [{"name": e["name"], "secret": True} if flag else e for e in env("v")]
                changed = [env(str(time.perf_counter_ns()))[0], *kept[1:]]
                return svc.update_deployment(ADMIN, n, {"env": changed})

            figures[f"update one of 3 {kind} values"] = timed(update, repeat)
        for what, samples in figures.items():
            print(f"secrets: {what:32} {median_ms(samples)}")


def bench_race(repeat: int) -> None:
    """A write whose first push loses the race: fetch, rebuild, push again."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        svc = padded_service(root, 100)
        other = gitrepo.GitRepo(
            path=root / "other.git", url=svc.settings.remote_url, committer=svc.repo.committer
        )
        samples = []
        for n in range(repeat):
            other.fetch()
            other.apply(
                lambda s, n=n: render.Change("x", writes=(render.Manifest(f"o/{n}", "x\n"),)),
                author=svc.repo.committer,
            )
            start = time.perf_counter()
            svc.create_deployment(ADMIN, "bench", {"name": f"race{n}", "image": "nginx"})
            samples.append(time.perf_counter() - start)
        print(f"create deployment after a lost push race         {median_ms(samples)}")


def bench_poll(deployments: int, pods_each: int, repeat: int, *, events: int = 0) -> None:
    """One poll cycle against the HTTP-level fake API (tests/kubefake.py) of this size; with
    ``events`` Events in the cluster, four in five about objects that are none of the
    deployments' (kube-system's, a Node's), as a cluster-wide list mostly is."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gitops_bridge import cluster, poller
    from tests.kubefake import FakeKube
    from tests.test_poller import populate
    from tests.test_poller_events import old_style

    with FakeKube() as fake, tempfile.TemporaryDirectory() as tmp:
        populate(fake, deployments, pods_each)
        for n in range(events):
            if n % 5:
                pod = f"coredns-7db6d8ff4d-{n:05d}"
                fake.apply(old_style(f"e.{n}", kind="Pod", obj=pod, namespace="kube-system"))
            else:
                owner = f"app{n % deployments}-{n % deployments:06d}"
                namespace = f"group-g{(n % deployments) % 7}"  # populate()'s layout
                fake.apply(old_style(f"e.{n}", kind="Deployment", obj=owner, namespace=namespace))
        connection = cluster.Cluster.connect(kubeconfig=str(fake.kubeconfig(Path(tmp) / "kc")))
        assert connection is not None
        watcher = poller.Poller(connection)
        readings = []
        samples = timed(lambda: readings.append(watcher.poll()), repeat)
        calls = readings[-1].calls
        kept = sum(len(found) for found in readings[-1].events.values())
        with_events = f", {events:,} events ({kept:,} kept)" if events else ""
        print(
            f"poll cycle, {deployments:>5} deployments / {deployments * pods_each:>6} pods"
            f"{with_events} ({calls} API calls)  {median_ms(samples)}"
        )


def bench_poll_scale(releases: int, pods_each: int, samples: int) -> None:
    """The poller against the fake API (tests/kubefake.py) holding ``releases`` HelmReleases
    and Deployments in groups of 100, ``pods_each`` pods each with their PodMetrics, every
    object as a real cluster returns it (tests/realobjects.py, managedFields included).

    The fake runs in this process; the poller runs in a child process of its own
    (``--pollscale-child``), so the RSS it reports (VmHWM and VmRSS of its
    /proc/self/status) is the poller's alone. The child times the first cycle (every LIST,
    a page at a time), a steady one (no LIST of the watched kinds), and then, ``samples``
    times, how long a pod's status change (PATCH pods/status) takes to show in its
    reading through the watch."""
    import json
    import urllib.request

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gitops_bridge.render import layout
    from tests import realobjects
    from tests.kubefake import FakeKube

    load_start = time.perf_counter()
    with FakeKube() as fake, tempfile.TemporaryDirectory() as tmp:
        groups = (releases + 99) // 100
        for g in range(groups):
            fake.apply(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"group-g{g}"}}
            )
        objects: list[dict[str, object]] = []
        metrics: list[tuple[str, str, dict[str, dict[str, str]]]] = []
        pod_bytes = release_bytes = 0
        for n in range(releases):
            ids = {"deployment_id": f"{n:06d}", "app": f"app{n}", "group": f"g{n // 100}"}
            name, namespace = f"app{n}-{n:06d}", f"group-g{n // 100}"
            template = realobjects.pod_template(
                name=name, deployment_id=ids["deployment_id"], app=ids["app"], group=ids["group"]
            )
            release = realobjects.helmrelease(
                namespace=namespace, name=name, replicas=pods_each, **ids
            )
            release_bytes += realobjects.size(release)
            objects.append(release)
            objects.append(
                realobjects.deployment(
                    namespace=namespace, name=name, replicas=pods_each, template=template, **ids
                )
            )
            for i in range(pods_each):
                pod = realobjects.pod(
                    namespace=namespace,
                    deployment=name,
                    index=n * pods_each + i,
                    template=template,
                    **ids,
                )
                pod_bytes += realobjects.size(pod) if i == 0 else 0
                objects.append(pod)
                sample = realobjects.pod_metrics(
                    namespace=namespace,
                    pod_name=pod["metadata"]["name"],
                    labels_of_pod={},
                    containers=tuple(c["name"] for c in template["spec"]["containers"]),
                )
                usage = {c["name"]: c["usage"] for c in sample["containers"]}
                metrics.append((namespace, pod["metadata"]["name"], usage))
        for g in range(groups):  # each group's own Kustomization, as the bridge lays them out
            objects.append(
                {
                    "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
                    "kind": "Kustomization",
                    "metadata": {
                        "name": layout.GROUP_KUSTOMIZATION,
                        "namespace": f"group-g{g}",
                        "labels": {layout.LABEL_GROUP: f"g{g}"},
                    },
                    "spec": {"interval": "10m", "path": f"./tenants/g{g}/apps", "prune": True},
                    "status": {"lastAppliedRevision": "main@sha1:" + "a" * 40},
                }
            )
        fake.bulk_load_for_bench(objects)
        fake.bulk_metrics_for_bench(metrics)
        del objects, metrics
        kubeconfig = fake.kubeconfig(Path(tmp) / "kc")
        # the fake encodes each PodMetrics once and keeps it: not in the poller's time
        urllib.request.urlopen(f"{fake.url}/apis/metrics.k8s.io/v1beta1/pods").read()
        loaded = time.perf_counter() - load_start
        print(
            f"poll at scale: {releases:,} HelmReleases and Deployments, "
            f"{releases * pods_each:,} pods and PodMetrics ({pod_bytes / releases / 1024:.1f} KB "
            f"a pod, {release_bytes / releases / 1024:.1f} KB a HelmRelease of JSON; "
            f"loaded in {loaded:.0f} s)"
        )
        sys.stdout.flush()
        command = [
            sys.executable,
            __file__,
            "--pollscale-child",
            str(kubeconfig),
            "--repeat",
            str(samples),
        ]
        done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    figures = next(
        json.loads(line.removeprefix("FIGURES "))
        for line in done.stdout.splitlines()
        if line.startswith("FIGURES ")
    )
    print(
        f"  first cycle: every LIST, pages of {figures['page_size']} ({figures['first_calls']} "
        f"API calls)   {figures['first_s']:6.2f} s, of it in the cyclic GC "
        f"{figures['first_gc_s']:.2f} s"
    )
    print(
        f"  steady cycle: PodMetrics + 2 GETs ({figures['steady_calls']} API calls)"
        f"      {figures['steady_s']:6.2f} s"
    )
    print(
        f"  RSS of the poller: peak (VmHWM) {figures['peak_mib']:.0f} MiB, after the first "
        f"cycle {figures['first_rss_mib']:.0f} MiB, at the end {figures['end_rss_mib']:.0f} MiB "
        f"(before polling {figures['start_rss_mib']:.0f} MiB)"
    )
    print(f"  a pod's change in the reading, by watch     {percentiles(figures['latencies'])}")


def poll_scale_child(kubeconfig: str, samples: int) -> dict[str, object]:
    """The poller's side of ``bench_poll_scale``: its figures."""
    import gc

    from gitops_bridge import cluster, poller

    def status_mib(field: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no {field} in /proc/self/status")

    collecting = [0.0, 0.0]  # seconds in the collector, when the current collection began

    def collector(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[1] = time.perf_counter()
        else:
            collecting[0] += time.perf_counter() - collecting[1]

    connection = cluster.Cluster.connect(kubeconfig=kubeconfig, timeout=60)
    assert connection is not None
    start_rss = status_mib("VmRSS")
    watcher = poller.Poller(connection, interval=3600)
    gc.callbacks.append(collector)
    start = time.perf_counter()
    first = watcher.run_once()
    first_s = time.perf_counter() - start
    gc.callbacks.remove(collector)
    assert first is not None, watcher.state.error
    first_rss = status_mib("VmRSS")
    start = time.perf_counter()
    steady = watcher.run_once()
    steady_s = time.perf_counter() - start
    assert steady is not None, watcher.state.error
    groups = sorted(first.pods)
    latencies = []
    for n in range(samples):
        namespace, ident = groups[n * len(groups) // samples]
        pod = first.pods[(namespace, ident)][0]["metadata"]["name"]
        restarts = 1000 + n
        patch = {
            "status": {
                "containerStatuses": [
                    {"name": "app", "ready": False, "restartCount": restarts, "state": {}}
                ]
            }
        }

        def shown(namespace: str = namespace, ident: str = ident, restarts: int = restarts) -> bool:
            reading = watcher.state.reading
            pods = reading.pods.get((namespace, ident), []) if reading else []
            return any(
                s.get("restartCount") == restarts
                for p in pods
                for s in p.get("status", {}).get("containerStatuses", [])
            )

        start = time.perf_counter()
        connection.request(
            "PATCH",
            cluster.path(cluster.PODS, namespace, pod) + "/status",
            body=patch,
            content_type="application/merge-patch+json",
        )
        while not shown():
            if time.perf_counter() - start > 30:
                raise RuntimeError(f"the change to {pod} did not show within 30 s")
            time.sleep(0.0005)
        latencies.append(time.perf_counter() - start)
    figures = {
        "page_size": watcher.page_size,
        "first_s": first_s,
        "first_gc_s": collecting[0],
        "first_calls": first.calls,
        "steady_s": steady_s,
        "steady_calls": steady.calls,
        "start_rss_mib": start_rss,
        "first_rss_mib": first_rss,
        "peak_mib": status_mib("VmHWM"),
        "end_rss_mib": status_mib("VmRSS"),
        "latencies": latencies,
    }
    watcher.stop()
    return figures


def rss_mib() -> float:
    """This process's resident set size (VmRSS in /proc/self/status), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def bench_rss(writes: int) -> None:
    """RSS over many env PATCHes of one deployment, 50 variables of 1 KiB each (run in a
    fresh process, so nothing measured before counts)."""
    with tempfile.TemporaryDirectory() as tmp:
        svc = padded_service(Path(tmp), 100)
        created = svc.create_deployment(ADMIN, "bench", {"name": "big", "image": "nginx"})
        assert created.deployment is not None
        name = created.deployment.name

        def patch(n: int) -> None:
            env = [{"name": f"VAR_{j}", "value": f"{n}:{j}:" + "x" * 1020} for j in range(50)]
            svc.update_deployment(ADMIN, name, {"env": env})

        for n in range(20):  # warm up: imports, first states, caches filling
            patch(n)
        start = rss_mib()
        marks = []
        for n in range(writes):
            patch(20 + n)
            if (n + 1) % max(1, writes // 4) == 0:
                marks.append(f"{n + 1}: {rss_mib():.0f}")
        after = rss_mib()
        print(
            f"RSS over {writes} writes with large env (50 x 1 KiB): start {start:.0f} MiB, "
            f"after {', '.join(marks)} MiB; growth {after - start:+.0f} MiB"
        )


def bench_usage(deployments: int, pods_each: int, repeat: int) -> None:
    """Usage over time (gitops_bridge/usage.py): one reading of ``deployments`` x
    ``pods_each`` pods folded into the series (the poller's listener, every cycle), the first
    one making every series; the memory a series takes (tracemalloc, a fresh store); one
    deployment's page section (history + the two SVGs)."""
    import dataclasses
    import functools
    import tracemalloc

    from gitops_bridge import poller, usage
    from gitops_bridge.webapp import graphs

    def pod(namespace: str, name: str, ident: str, restarts: int) -> dict[str, object]:
        app = {"name": "app", "ready": True, "restartCount": restarts}
        if restarts:
            app["lastState"] = {"terminated": {"reason": "OOMKilled", "exitCode": 137}}
        return {
            "metadata": {"name": name, "namespace": namespace, "labels": {"id": ident}},
            "status": {
                "phase": "Running",
                "containerStatuses": [app, {"name": "frpc", "ready": True, "restartCount": 0}],
            },
        }

    keys = [(f"group-g{n % 50}", f"{n:06d}") for n in range(deployments)]
    names = {key: [f"app-{key[1]}-5d8f7-{p}" for p in range(pods_each)] for key in keys}

    def reading(at: float, variant: int) -> poller.Reading:
        pods = {
            key: [pod(key[0], name, key[1], variant // 3) for name in names[key]] for key in keys
        }
        metrics = {
            (key[0], name): {
                "metadata": {"name": name, "namespace": key[0]},
                "containers": [
                    {
                        "name": "app",
                        "usage": {
                            "cpu": f"{1_000_000 + n * 7 + variant}n",
                            "memory": f"{20_000 + n + variant}Ki",
                        },
                    },
                    {"name": "frpc", "usage": {"cpu": "1043212n", "memory": "10240Ki"}},
                ],
            }
            for n, key in enumerate(keys)
            for name in names[key]
        }
        return poller.Reading(
            taken_at=at,
            helmreleases={},
            deployments={key: {} for key in keys},
            pods=pods,
            metrics=metrics,
            kustomization=None,
            gitrepository=None,
            calls=0,
            duration=0.0,
            metrics_available=True,
        )

    settings = config.UsageSettings(max_series=deployments)
    start = 1_800_000_000.0
    readings = [reading(start + 10 * i, i) for i in range(6)]  # restarts rise every 3rd
    store = usage.Usage(settings, clock=lambda: start + 10 * repeat)
    first = timed(lambda: store.feed(readings[0]), 1)
    samples, cpu = [], []  # wall clock; this process's CPU time (the machine may be shared)
    for i in range(1, repeat + 1):
        taken = start + 10 * i
        shown = readings[i % len(readings)]
        later = dataclasses.replace(shown, taken_at=taken)
        before = time.process_time()
        samples.extend(timed(functools.partial(store.feed, later), 1))
        cpu.append(time.process_time() - before)
    label = f"{deployments:,} deployments x {pods_each} pods"
    print(
        f"usage: feed one reading, {label:<28}{median_ms(samples)}  (CPU {median_ms(cpu)}; "
        f"first, making the series: {first[0] * 1000:.1f} ms)"
    )
    fit = usage.Footprint(cpu_request=0.1, cpu_limit=0.2, memory_request=2**27, memory_limit=2**28)
    key = keys[deployments // 2]
    pages = timed(lambda: graphs.section(store.history(key), fit), repeat)
    print(f"usage: one page's section (history + 2 SVGs)          {median_ms(pages)}")

    fresh = usage.Usage(settings, clock=lambda: start)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fresh.feed(readings[0])
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    arrays = settings.window // settings.step * 14
    print(
        f"usage: memory per series ({settings.window // settings.step} steps of "
        f"{settings.step} s)         {held / deployments:8.0f} B  (its arrays: {arrays} B; "
        f"{held / 2**20:.1f} MiB for {deployments:,})"
    )


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    median = statistics.median(ordered) * 1000
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1000
    worst = ordered[-1] * 1000
    return f"median {median:6.1f} ms, p99 {p99:6.1f} ms, max {worst:6.1f} ms (n={len(ordered)})"


def bench_health(seconds: float) -> None:
    """/healthz and the API of `serve` (waitress, its lanes) while it holds 200 follow streams
    and 300 idle connections and 16 clients loop on history?diff=1 (200 versions), then while
    every stream is abandoned at once. The cluster is the fake API (tests/kubefake.py)."""
    import threading

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests import test_streams as ts

    limits = {"max_streams": 200, "max_streams_per_user": 4}
    with tempfile.TemporaryDirectory() as tmp, ts.running_bridge(Path(tmp), **limits) as stack:
        url = stack.url
        for n in range(199):  # 200 versions of the deployment
            body = {"replicas": 1 + n % 3}
            assert (
                ts.call(url, "POST", f"/api/v1/deployments/{stack.name}/scale", body, "u0")[0]
                == 200
            )

        def sample(probe: Callable[[], object], duration: float) -> list[float]:
            samples = []
            deadline = time.monotonic() + duration
            while time.monotonic() < deadline:
                start = time.perf_counter()
                probe()
                samples.append(time.perf_counter() - start)
                time.sleep(0.02)
            return samples

        deployment = f"/api/v1/deployments/{stack.name}"
        quiet = sample(lambda: ts.healthz(url), 3)
        page = sample(lambda: ts.call(url, "GET", f"{deployment}/history?diff=1", None, "u0"), 3)
        print(f"{'/healthz, idle service':<52}{percentiles(quiet)}")
        print(f"{'history?diff=1 (a page of 50 of 200), idle':<52}{percentiles(page)}")
        idle = [socket.create_connection((ts.HOST, stack.port)) for _ in range(300)]
        users = [user for user in ts.USERS[:50] for _ in range(4)]
        held = [ts.open_stream(stack, user) for user in users]
        assert all(h.status == 200 for h in held)
        stop = threading.Event()
        pages: list[float] = []

        def history_loop() -> None:
            while not stop.is_set():
                start = time.perf_counter()
                status, _ = ts.call(url, "GET", f"{deployment}/history?diff=1", None, "u0")
                assert status == 200
                pages.append(time.perf_counter() - start)

        clients = [threading.Thread(target=history_loop) for _ in range(16)]
        for client in clients:
            client.start()
        try:
            loaded = sample(lambda: ts.healthz(url), seconds)
            api = sample(lambda: ts.call(url, "GET", deployment, None, "u0"), seconds / 2)
            for h in held:  # every client leaves at once
                h.close()
            abandoned = sample(lambda: ts.healthz(url), 5)
        finally:
            stop.set()
            for client in clients:
                client.join()
            for sock in idle:
                sock.close()
        print("loaded: 200 follow streams, 300 idle connections, 16 clients on history?diff=1")
        print(f"{'/healthz, loaded':<52}{percentiles(loaded)}")
        print(f"{'GET deployment, loaded':<52}{percentiles(api)}")
        print(f"{'history?diff=1, loaded':<52}{percentiles(pages)}")
        print(f"{'/healthz, the 200 streams abandoned at once':<52}{percentiles(abandoned)}")


def bench_history(changes: int, repeat: int, profile: bool) -> None:
    """Pages of 50 of the history of one deployment with ``changes`` changes, through the
    API: every page once, then the first, a middle and the last page, with and without
    diffs ("cold": the parsed versions and the cursors handed out forgotten first). The
    repository holds 2,000 deployments in groups of 100 (scripts/benchrepo.py); each change
    of the deployment is followed by one of another deployment of its group, all appended
    by one git fast-import (tests/historyutil.py), every file as the service writes it."""
    import cProfile
    import functools
    import pstats

    import benchrepo

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gitops_bridge import history, webapp
    from tests.historyutil import append_history

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        remote = root / "remote.git"
        settings = config.load(
            data_dir=root / "data", repo_url=remote.as_uri(), fetch_interval=3600
        )
        generated = benchrepo.generate(remote, 2000, settings)
        app = webapp.create_app(settings)
        client = app.test_client()
        svc: service.Service = app.extensions["gitops_bridge"]
        state = svc.state()
        group = [state.deployments[name] for name in generated.deployments[:100]]
        target, others = group[0], group[1:11]
        start = time.perf_counter()
        append_history(
            remote,
            settings=settings,
            deployment=target,
            count=changes - 1,
            others=others,
            every_other=1,
        )
        built = time.perf_counter() - start
        svc.repo.fetch()
        print(
            f"history of {target.name}: {changes} changes among {changes * 2 - 1} commits, "
            f"{generated.files} files (appended in {built:.1f} s)"
        )
        member = {"X-Forwarded-User": benchrepo.OWNER}
        url = f"/api/v1/deployments/{target.name}/history?limit=50"

        def get(address: str) -> list[str]:
            """One page; the versions it shows, and the address of the next page last."""
            response = client.get(address, headers=member)
            assert response.status_code == 200, response.json
            found = re.search(r'<([^>]+)>;\s*rel="next"', response.headers.get("Link", ""))
            return [v["commit"] for v in response.json] + [found.group(1) if found else ""]

        def walk() -> list[str]:
            """Every version, following the Link of each page (the cursors handed out)."""
            versions: list[str] = []
            address = url
            while address:
                *shown, address = get(address)
                versions += shown
            return versions

        def cold(address: str) -> None:
            svc.repo._parsed.clear()
            history._versions.clear()
            history._cursors.clear()
            get(address)

        start = time.perf_counter()
        newest_first = walk()
        walked = time.perf_counter() - start
        assert len(newest_first) == changes == len(set(newest_first))
        pages_walked = -(-changes // 50)
        print(
            f"{'history, every page once (cold)':<34} {walked * 1000:8.0f} ms, {pages_walked} pages"
        )
        middle = newest_first[changes // 2 - 1]
        last = newest_first[changes - 51]
        pages = (("first page", url), ("middle page", f"{url}&before={middle}"))
        pages += (("last page", f"{url}&before={last}"),)
        for label, address in pages:
            for diff in ("", "&diff=1"):
                warm = timed(functools.partial(get, address + diff), repeat)
                fresh = timed(functools.partial(cold, address + diff), max(3, repeat // 3))
                what = f"history {label}{', diff=1' if diff else ''}"
                print(f"{what:<34} warm {median_ms(warm)}   cold {median_ms(fresh)}")
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(cold, f"{url}&before={middle}&diff=1")
            print("--- profile of a middle history page with diffs, cold ---")
            stats = pstats.Stats(profiler, stream=sys.stdout)
            stats.sort_stats("cumulative").print_stats(30)
            stats.sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sizes", default="100,2000,20000")
    parser.add_argument("--rss-writes", type=int, default=2000)
    parser.add_argument("--health-seconds", type=float, default=10.0)
    parser.add_argument(
        "--only",
        action="append",
        choices=[
            "render",
            "create",
            "load",
            "race",
            "poll",
            "rss",
            "health",
            "history",
            "pollscale",
            "secrets",
            "usage",
        ],
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile one create at the largest size and one history page (cProfile, cumulative)",
    )
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pollscale-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child is not None:
        bench_rss(args.rss_child)
        return
    if args.scale_child is not None:
        import json

        figures = bench_scale(args.scale_child, args.repeat, args.profile)
        print("FIGURES " + json.dumps(figures))
        return
    if args.pollscale_child is not None:
        import json

        print("FIGURES " + json.dumps(poll_scale_child(args.pollscale_child, args.repeat)))
        return
    everything = [
        "render",
        "create",
        "load",
        "race",
        "poll",
        "rss",
        "health",
        "history",
        "secrets",
        "usage",
    ]
    chosen = set(args.only or everything)
    if "render" in chosen:
        bench_render(args.repeat * 20)
    if "create" in chosen:
        scale_table([int(s) for s in args.sizes.split(",")], args.repeat, args.profile)
    if "load" in chosen:  # served over HTTP, the clients in this process
        import benchload

        sys.stdout.flush()
        benchload.table([int(s) for s in args.sizes.split(",")])
    if "race" in chosen:
        bench_race(args.repeat)
    if "poll" in chosen:
        bench_poll(10, 5, args.repeat)
        bench_poll(2000, 5, max(3, args.repeat // 3))
        bench_poll(2000, 5, max(3, args.repeat // 3), events=20_000)
    if "rss" in chosen:
        sys.stdout.flush()
        command = [sys.executable, __file__, "--rss-child", str(args.rss_writes)]
        subprocess.run(command, check=True)
    if "health" in chosen:
        bench_health(args.health_seconds)
    if "history" in chosen:
        bench_history(1000, args.repeat, args.profile)
    if "secrets" in chosen:
        bench_secrets(args.repeat)
    if "usage" in chosen:
        bench_usage(20_000, 2, args.repeat)
    if "pollscale" in chosen:  # only when asked: it loads 120,000 objects (a minute, 3 GB)
        bench_poll_scale(10_000, 5, samples=20)


if __name__ == "__main__":
    main()
