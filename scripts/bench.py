"""Benchmarks of gitops-bridge's hot paths; prints medians. Run with scripts/bench.

Each figure is measured on real parts (git remotes on local disk, the real service);
nothing here asserts a time: compare the figures between commits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
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


def bench_create(files: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        svc = padded_service(Path(tmp), files)
        counter = iter(range(10**6))

        def create() -> None:
            n = next(counter)
            svc.create_deployment(ADMIN, "bench", {"name": f"app{n}", "image": "nginx"})

        create()  # warm caches
        samples = timed(create, repeat)
        print(f"create deployment, repo of {files:>6} files (commit+push) {median_ms(samples)}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--sizes", default="100,2000,20000")
    args = parser.parse_args()
    bench_render(args.repeat * 20)
    for size in (int(s) for s in args.sizes.split(",")):
        bench_create(size, args.repeat)
    bench_race(args.repeat)
    bench_poll(10, 5, args.repeat)
    bench_poll(2000, 5, max(3, args.repeat // 3))


if __name__ == "__main__":
    main()
