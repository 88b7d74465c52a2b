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
            svc._parsed.clear()
            builds.append(timed(svc.state, 1)[0])
        figures["state_s"] = statistics.median(builds)

        # listing every deployment: the service, then the API as the admin
        figures["list_svc_s"] = statistics.median(timed(lambda: svc.deployments(ADMIN), 3))
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
        figures["create_s"] = statistics.median(timed(create, repeat))

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
    ("create vs limit", lambda f: f"{f['create_s'] / f['limit_s']:.0f}x"),
    ("start-up to first answer with data", lambda f: f"{f['startup_s']:.1f} s"),
    (
        "RSS after start / after reads",
        lambda f: f"{f['rss_start_mib']:.0f} / {f['rss_reads_mib']:.0f} MiB",
    ),
    ("svc.state(), full build (caches emptied)", lambda f: f"{f['state_s']:.2f} s"),
    ("svc.deployments(admin), all", lambda f: f"{f['list_svc_s'] * 1000:.0f} ms"),
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


def bench_poll(deployments: int, pods_each: int, repeat: int) -> None:
    """One poll cycle against the HTTP-level fake API (tests/kubefake.py) of this size."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from gitops_bridge import cluster, poller
    from tests.kubefake import FakeKube
    from tests.test_poller import populate

    with FakeKube() as fake, tempfile.TemporaryDirectory() as tmp:
        populate(fake, deployments, pods_each)
        connection = cluster.Cluster.connect(kubeconfig=str(fake.kubeconfig(Path(tmp) / "kc")))
        assert connection is not None
        watcher = poller.Poller(connection)
        readings = []
        samples = timed(lambda: readings.append(watcher.poll()), repeat)
        calls = readings[-1].calls
        print(
            f"poll cycle, {deployments:>5} deployments / {deployments * pods_each:>6} pods "
            f"({calls} API calls)  {median_ms(samples)}"
        )


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sizes", default="100,2000,20000")
    parser.add_argument("--rss-writes", type=int, default=2000)
    parser.add_argument("--health-seconds", type=float, default=10.0)
    parser.add_argument(
        "--only", action="append", choices=["render", "create", "race", "poll", "rss", "health"]
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile one create at the largest size (cProfile, cumulative time)",
    )
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child is not None:
        bench_rss(args.rss_child)
        return
    if args.scale_child is not None:
        import json

        figures = bench_scale(args.scale_child, args.repeat, args.profile)
        print("FIGURES " + json.dumps(figures))
        return
    chosen = set(args.only or ["render", "create", "race", "poll", "rss", "health"])
    if "render" in chosen:
        bench_render(args.repeat * 20)
    if "create" in chosen:
        scale_table([int(s) for s in args.sizes.split(",")], args.repeat, args.profile)
    if "race" in chosen:
        bench_race(args.repeat)
    if "poll" in chosen:
        bench_poll(10, 5, args.repeat)
        bench_poll(2000, 5, max(3, args.repeat // 3))
    if "rss" in chosen:
        sys.stdout.flush()
        command = [sys.executable, __file__, "--rss-child", str(args.rss_writes)]
        subprocess.run(command, check=True)
    if "health" in chosen:
        bench_health(args.health_seconds)


if __name__ == "__main__":
    main()
