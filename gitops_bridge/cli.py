"""Command line: ``gitops-bridge serve | init-repo | group create | deploy | render | validate``."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import logging
import os
import secrets
import sys
import threading
from pathlib import Path
from typing import Any

from gitops_bridge import (
    assets,
    bootstrap,
    chartpush,
    config,
    credentials,
    gitrepo,
    history,
    models,
    monitor,
    runtime,
    storage,
    tools,
    validate,
)
from gitops_bridge.errors import BridgeError
from gitops_bridge.identity import User
from gitops_bridge.service import Service

log = logging.getLogger(__name__)


def _settings(args: argparse.Namespace) -> config.Settings:
    return config.load(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=args.data_dir,
        repo_url=args.repo_url,
        branch=args.branch,
        domain=args.domain,
    )


def _user(args: argparse.Namespace, settings: config.Settings) -> User:
    name = models.fold_name(args.as_user or getpass.getuser())
    return User(
        name=name,
        email=args.email or f"{name}@{settings.domain}",
        admin=name in settings.admins or args.as_user is None,
    )


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def cmd_serve(args: argparse.Namespace) -> int:
    from gitops_bridge import webapp

    settings = _settings(args)
    app = webapp.create_app(settings)
    rt = app.extensions["gitops_bridge.runtime"]
    rt.start_background()
    svc = rt.svc
    # read the repository now rather than on the first request (/readyz waits for it)
    threading.Thread(target=_warm, args=(svc,), name="state-warm", daemon=True).start()
    print(f"gitops-bridge on http://{settings.host}:{settings.port}")
    print(f"GitOps remote: {settings.remote_url}  (working clone {svc.repo.path})", flush=True)
    from gitops_bridge import serving

    serving.serve(app, settings)
    return 0


def _warm(svc: Service) -> None:
    try:
        svc.state()
    except BridgeError as exc:  # the first request says it again
        log.warning("cannot read the GitOps repository yet: %s", exc.message)


def cmd_init_repo(args: argparse.Namespace) -> int:
    files = bootstrap.template_files(cluster=args.cluster, decryption=args.decryption)
    bridge = gitrepo.Author("gitops-bridge", "gitops-bridge@localhost")
    sha = gitrepo.init_worktree(
        Path(args.path),
        files=files,
        author=bridge,
        committer=bridge,
        message=f"Initialise the GitOps repository for cluster {args.cluster}",
    )
    print(f"initialised {args.path} for cluster {args.cluster}: {len(files)} files, commit {sha}")
    return 0


def cmd_group_create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    body = {
        "name": args.name,
        "members": [m for m in (args.members or "").split(",") if m],
        "quota": {
            "cpu": args.cpu,
            "memory": args.memory,
            "storage": args.storage,
            "deployments": args.deployments,
        },
    }
    written = svc.create_group(_user(args, settings), body)
    _print({"group": args.name, "commit": written.commit.sha})
    return 0


def cmd_group_update(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    patch: dict[str, Any] = {}
    for key in ("members", "admins"):
        value = getattr(args, key)
        if value is not None:
            patch[key] = [m for m in value.split(",") if m]
    quota = {
        key: getattr(args, key)
        for key in ("cpu", "memory", "storage", "deployments")
        if getattr(args, key) is not None
    }
    if quota:
        patch["quota"] = quota
    if args.review is not None:
        patch["review"] = None if args.review == "default" else args.review
    written = svc.update_group(_user(args, settings), args.name, patch)
    _print({"group": args.name, "commit": written.commit.sha, "changed": written.commit.changed})
    return 0


def _deployment_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.file:
        data = json.loads(Path(args.file).read_text())
        if not isinstance(data, dict):
            raise SystemExit("--file: must hold a JSON object")
        return data
    env: list[dict[str, Any]] = []
    for item in args.env or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--env: expected NAME=VALUE, got {item!r}")
        env.append({"name": name, "value": value})
    for item in args.secret_env or []:
        name, sep, value = item.partition("=")
        if not sep:  # kept out of the shell's history: from the environment, or asked for
            value = os.environ.get(name) or getpass.getpass(f"{name} (secret): ")
        env.append({"name": name, "value": value, "secret": True})
    for item in args.env_from or []:
        name, sep, ref = item.partition("=")
        secret, colon, key = ref.partition(":")
        if not sep or not colon:
            raise SystemExit(f"--env-from: expected NAME=SECRET:KEY, got {item!r}")
        env.append({"name": name, "secretRef": {"name": secret, "key": key}})
    volumes = []
    for item in args.volume or []:
        name, sep, rest = item.partition(":")
        path, _, mode = rest.partition(":")
        if not sep or not path or mode not in ("", "ro"):
            raise SystemExit(f"--volume: expected NAME:/PATH[:ro], got {item!r}")
        volumes.append({"volume": name, "path": path, "readOnly": mode == "ro"})
    return {
        "name": args.name,
        "image": args.image,
        "volumes": volumes,
        "replicas": args.replicas,
        "port": args.port_number,
        "env": env,
        "resources": {"cpu": args.cpu, "memory": args.memory},
        "expose": args.expose,
    }


def cmd_deploy(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    written = svc.create_deployment(_user(args, settings), args.group, _deployment_body(args))
    assert written.deployment is not None
    _print(
        {
            "name": written.deployment.name,
            "id": written.deployment.id,
            "group": args.group,
            "commit": written.commit.sha,
            "url": svc.url(written.deployment),
        }
    )
    return 0


def _written_json(svc: Any, written: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"commit": written.commit.sha, "changed": written.commit.changed}
    if written.deployment is not None:
        data["name"] = written.deployment.name
    if written.change is not None:
        data["state"] = "pending review"
        data["change"] = written.change.id
    return data


def cmd_manage(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    user = _user(args, settings)
    if args.command == "scale":
        written = svc.scale(user, args.name, args.replicas)
    elif args.command == "restart":
        written = svc.restart(user, args.name)
    elif args.command == "delete":
        written = svc.delete_deployment(user, args.name)
    elif args.command == "update":
        written = svc.update_deployment(user, args.name, json.loads(args.patch))
    elif args.command == "revert":
        written = history.revert(svc, user, args.name, args.commit)
    else:
        written = history.restore(svc, user, args.name, args.commit)
    _print(_written_json(svc, written))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    for version in history.page(
        svc, _user(args, settings), args.name, limit=history.MAX_PAGE
    ).versions:
        summary = "; ".join(version.summary)
        print(f"{version.sha[:10]}  {version.author:<12} {version.subject}  [{summary}]")
    return 0


def cmd_changes(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    user = _user(args, settings)
    if args.action == "list":
        for change in svc.review.open_changes(user):
            print(f"{change.id}  {change.author:<12} {change.subject}  {change.url}")
    elif args.action == "approve":
        written = svc.review.approve(user, args.id)
        _print({"change": args.id, "approved": True, "commit": written.commit.sha})
    else:
        svc.review.close(user, args.id)
        _print({"change": args.id, "closed": True})
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    change = svc.preview_deployment(_user(args, settings), args.group, _deployment_body(args))
    for manifest in change.writes:
        print(f"# --- {manifest.path}")
        print(manifest.text, end="")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """A new API token: print it once, with the settings entry that accepts it."""
    token = "gb_" + secrets.token_urlsafe(32)
    entry: dict[str, Any] = {"sha256": hashlib.sha256(token.encode()).hexdigest()}
    if args.groups:
        entry["groups"] = [g for g in args.groups.split(",") if g]
    if args.admin:
        entry["admin"] = True
    print(f"token (shown once): {token}")
    print(f"GITOPS_BRIDGE_API_TOKENS='{json.dumps({args.name: entry})}'")
    return 0


def cmd_upgrade_repo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    written = svc.upgrade_repository(_user(args, settings))
    _print(
        {"commit": written.commit.sha, "changed": written.commit.changed, "note": written.message}
    )
    return 0


def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    svc = runtime.open_service(settings)
    written = svc.rotate_secrets(_user(args, settings), force=args.force)
    _print(
        {"commit": written.commit.sha, "changed": written.commit.changed, "note": written.message}
    )
    return 0


def cmd_secrets_migrate(args: argparse.Namespace) -> int:
    """Move a deployment's plaintext env values into its encrypted Secret: the named keys,
    else every value that looks like a credential."""
    settings = _settings(args)
    svc = runtime.open_service(settings)
    user = _user(args, settings)
    current = svc.deployment(user, args.name)
    keys = set(args.keys.split(",")) if args.keys else None
    env: list[dict[str, Any]] = []
    moved = []
    for var in current.spec.env:
        plain = var.kind == "plain"
        wanted = (
            var.name in keys
            if keys is not None
            else plain and bool(credentials.reason(var.name, var.value or ""))
        )
        if plain and wanted:
            env.append({"name": var.name, "value": var.value or "", "secret": True})
            moved.append(var.name)
        else:
            env.append(var.model_dump())
    unknown = sorted(
        (keys or set()) - {var.name for var in current.spec.env if var.kind == "plain"}
    )
    if unknown:
        raise SystemExit(f"--keys: {', '.join(unknown)}: no plaintext env entry of that name")
    if not moved:
        _print({"deployment": args.name, "moved": [], "note": "nothing looks like a credential"})
        return 0
    written = svc.update_deployment(user, args.name, {"env": env})
    _print(
        {
            "deployment": args.name,
            "moved": moved,
            "commit": written.commit.sha,
            "note": "the old values stay in the repository's history: rotate them",
        }
    )
    return 0


def cmd_storage(args: argparse.Namespace) -> int:
    """Volumes and registry images of a group (``storage``, ``volume ...``, ``image ...``)."""
    from gitops_bridge.webapp import views

    settings = _settings(args)
    svc = runtime.open_service(settings)
    user = _user(args, settings)
    group, action = args.group, args.action
    if action == "summary":
        _print(views.storage_summary(storage.summary(svc, user, group)))
    elif action == "volumes":
        _print([views.volume(v) for v in storage.volumes(svc, user, group)])
    elif action == "volume-create":
        body = {"name": args.name, "size": args.size, "accessMode": args.access_mode}
        if args.storage_class:
            body["storageClass"] = args.storage_class
        written = storage.create_volume(svc, user, group, body)
        _print({"volume": args.name, "commit": written.commit.sha})
    elif action == "volume-grow":
        written = storage.resize_volume(svc, user, group, args.name, {"size": args.size})
        _print({"volume": args.name, "size": args.size, "commit": written.commit.sha})
    elif action == "volume-delete":
        written = storage.delete_volume(svc, user, group, args.name, {"confirm": args.confirm})
        _print({"volume": args.name, "commit": written.commit.sha, "note": written.message})
    elif action == "images":
        tags, _ = storage.images(svc, user, group)
        _print([views.tag(t) for t in tags])
    elif action == "image-delete":
        deleted = storage.delete_tag(svc, user, group, args.repository, args.tag)
        _print({"deleted": f"{deleted.repository}:{deleted.tag}", "also": list(deleted.also)})
    elif action == "retention":
        result = storage.retention(svc, user, group, {"keep": args.keep, "dry_run": args.dry_run})
        _print(
            {
                "delete": [f"{t.repository}:{t.tag}" for t in result.delete],
                "reclaim": result.reclaim,
                "done": result.done,
            }
        )
    return 0


def cmd_events_key(args: argparse.Namespace) -> int:
    """The Flux Provider key of one namespace, as the Secret that holds it."""
    settings = _settings(args)
    token = settings.kubernetes.events_token.get_secret_value()
    if not token:
        print("error: kubernetes.events_token is not set", file=sys.stderr)
        return 2
    key = monitor.events_key(token, args.namespace)
    print(
        f"kubectl -n {args.namespace} create secret generic {settings.flux.events_secret} "
        f"--from-literal=token={key}"
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    report = validate.validate_repo(
        Path(args.path), helm=tools.binary("helm"), kubectl=tools.binary("kubectl")
    )
    for finding in report.findings:
        print(finding)
    if report.findings:
        print(f"{len(report.findings)} findings, {report.valid} valid objects", file=sys.stderr)
        return 1
    print(f"{report.valid} valid objects")
    return 0


def cmd_chart_push(args: argparse.Namespace) -> int:
    """Package the shipped chart and push it to the OCI registry (settings: chart.oci_*)."""
    settings = config.load()
    plain_http = settings.chart.oci_insecure if args.plain_http is None else args.plain_http
    pushed = chartpush.push(
        url=args.url or settings.chart.oci_url,
        chart_dir=assets.chart(),
        helm=tools.binary("helm", explicit=settings.helm_bin),
        plain_http=plain_http,
        username=args.username or "",
        password=sys.stdin.read().rstrip("\r\n") if args.password_stdin else "",
    )
    print(f"{'pushed' if pushed.changed else 'unchanged'} {pushed.reference}")
    print(f"digest {pushed.digest}")
    return 0


def _repo_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="state directory (default .gitops-bridge)")
    parser.add_argument("--repo-url", help="GitOps remote (default: embedded, under data dir)")
    parser.add_argument("--branch", help="branch Flux follows (default main)")
    parser.add_argument("--domain", help="platform domain of public URLs (default code-hub.com)")


def _storage_commands(sub: Any) -> None:
    def command(parent: Any, name: str, action: str, help_text: str) -> argparse.ArgumentParser:
        found: argparse.ArgumentParser = parent.add_parser(name, help=help_text)
        found.add_argument("group")
        _repo_options(found)
        _user_options(found)
        found.set_defaults(func=cmd_storage, action=action)
        return found

    command(sub, "storage", "summary", "a group's storage quota: volumes, images, free")
    volume = sub.add_parser("volume", help="a group's volumes").add_subparsers(
        dest="verb", required=True
    )
    command(volume, "list", "volumes", "the group's volumes and who mounts them")
    create = command(volume, "create", "volume-create", "create a volume")
    create.add_argument("name")
    create.add_argument("--size", required=True)
    create.add_argument("--class", dest="storage_class", help="a configured storage class")
    create.add_argument("--access-mode", default="ReadWriteOnce")
    grow = command(volume, "grow", "volume-grow", "grow a volume (never shrinks)")
    grow.add_argument("name")
    grow.add_argument("--size", required=True)
    delete = command(volume, "delete", "volume-delete", "delete a volume and its data")
    delete.add_argument("name")
    delete.add_argument("--confirm", required=True, help="the volume's name, typed again")
    image = sub.add_parser("image", help="a group's registry images").add_subparsers(
        dest="verb", required=True
    )
    command(image, "list", "images", "every tag, its size and who uses it")
    drop = command(image, "delete", "image-delete", "delete a tag (not one in use)")
    drop.add_argument("repository")
    drop.add_argument("tag")
    keep = command(image, "retention", "retention", "keep the newest N tags per repository")
    keep.add_argument("--keep", type=int, required=True)
    keep.add_argument("--dry-run", action="store_true")


def _user_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--as", dest="as_user", help="act as this user (default: you, as admin)")
    parser.add_argument("--email", help="author e-mail (default <user>@<domain>)")


def _deployment_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("group")
    parser.add_argument("--file", help="a JSON body as the API takes it")
    parser.add_argument("--name")
    parser.add_argument("--image")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--port", dest="port_number", type=int, default=8080)
    parser.add_argument("--env", action="append", metavar="NAME=VALUE")
    parser.add_argument(
        "--volume",
        action="append",
        metavar="NAME:/PATH[:ro]",
        help="mount one of the group's volumes",
    )
    parser.add_argument(
        "--secret-env",
        action="append",
        metavar="NAME[=VALUE]",
        help="a secret value, stored encrypted; without =VALUE: from $NAME, else asked for",
    )
    parser.add_argument(
        "--env-from",
        action="append",
        metavar="NAME=SECRET:KEY",
        help="a key of a Secret in the group's namespace managed elsewhere",
    )
    parser.add_argument("--cpu", default="100m")
    parser.add_argument("--memory", default="128Mi")
    parser.add_argument("--expose", action="store_true")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="gitops-bridge", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web UI and API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    _repo_options(serve)
    serve.set_defaults(func=cmd_serve)

    init = sub.add_parser("init-repo", help="create a new GitOps repository at PATH")
    init.add_argument("path")
    init.add_argument("--cluster", default="dev")
    init.add_argument(
        "--decryption",
        action="store_true",
        help="the platform Kustomization decrypts with flux-system/sops-age (secrets configured)",
    )
    init.set_defaults(func=cmd_init_repo)

    group = sub.add_parser("group", help="manage groups").add_subparsers(
        dest="action", required=True
    )
    create = group.add_parser("create", help="create a group (admins)")
    create.add_argument("name")
    create.add_argument("--members", help="comma separated user names")
    create.add_argument("--cpu", required=True)
    create.add_argument("--memory", required=True)
    create.add_argument("--storage", default="10Gi")
    create.add_argument("--deployments", type=int, required=True)
    _repo_options(create)
    _user_options(create)
    create.set_defaults(func=cmd_group_create)

    update = group.add_parser("update", help="change members, admins, quota or review mode")
    update.add_argument("name")
    update.add_argument("--members", help="comma separated user names (replaces the list)")
    update.add_argument("--admins", help="comma separated group admins (replaces the list)")
    update.add_argument("--cpu")
    update.add_argument("--memory")
    update.add_argument("--storage")
    update.add_argument("--deployments", type=int)
    update.add_argument("--review", choices=["direct", "pull-request", "default"])
    _repo_options(update)
    _user_options(update)
    update.set_defaults(func=cmd_group_update)

    deploy = sub.add_parser("deploy", help="deploy an image into a group (one commit)")
    _deployment_options(deploy)
    _repo_options(deploy)
    _user_options(deploy)
    deploy.set_defaults(func=cmd_deploy)

    rendered = sub.add_parser("render", help="print the manifests a deploy would commit")
    _deployment_options(rendered)
    _repo_options(rendered)
    _user_options(rendered)
    rendered.set_defaults(func=cmd_render)

    for name, help_text in [
        ("scale", "set the replicas of a deployment (0 stops it)"),
        ("restart", "rolling restart of a deployment"),
        ("update", "change a deployment with a JSON merge patch"),
        ("delete", "remove a deployment (Flux prunes it)"),
        ("revert", "undo one change of a deployment (git revert)"),
        ("restore", "bring a deployment back to its version at a commit"),
    ]:
        manage = sub.add_parser(name, help=help_text)
        manage.add_argument("name", help="the deployment, {app}-{id}")
        if name == "scale":
            manage.add_argument("replicas", type=int)
        if name == "update":
            manage.add_argument("patch", help='JSON, e.g. \'{"image": "registry:5000/a/b:2"}\'')
        if name in ("revert", "restore"):
            manage.add_argument("commit")
        _repo_options(manage)
        _user_options(manage)
        manage.set_defaults(func=cmd_manage)

    log_cmd = sub.add_parser("history", help="the commits that changed a deployment")
    log_cmd.add_argument("name")
    _repo_options(log_cmd)
    _user_options(log_cmd)
    log_cmd.set_defaults(func=cmd_history)

    changes = sub.add_parser("changes", help="change requests waiting for review")
    changes_sub = changes.add_subparsers(dest="action", required=True)
    changes_sub.add_parser("list")
    for action in ("approve", "close"):
        changes_sub.add_parser(action).add_argument("id")
    for sub_parser in changes_sub.choices.values():
        _repo_options(sub_parser)
        _user_options(sub_parser)
    changes.set_defaults(func=cmd_changes)

    token = sub.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    new_token = token.add_parser("new", help="make a token for NAME (prints its settings entry)")
    new_token.add_argument("name")
    new_token.add_argument("--groups", help="comma separated groups it acts in")
    new_token.add_argument("--admin", action="store_true", help="a platform admin")
    new_token.set_defaults(func=cmd_token)

    upgrade = sub.add_parser(
        "upgrade-repo", help="bring the repository to this version's layout (one commit)"
    )
    _repo_options(upgrade)
    _user_options(upgrade)
    upgrade.set_defaults(func=cmd_upgrade_repo)

    secrets_cmd = sub.add_parser(
        "secrets", help="secret values in the repository (SOPS + age)"
    ).add_subparsers(dest="action", required=True)
    rotate = secrets_cmd.add_parser(
        "rotate", help="re-encrypt every secret file for today's recipients (one commit)"
    )
    rotate.add_argument("--force", action="store_true", help="every file, with new data keys")
    _repo_options(rotate)
    _user_options(rotate)
    rotate.set_defaults(func=cmd_secrets_rotate)
    migrate = secrets_cmd.add_parser(
        "migrate", help="move a deployment's plaintext credentials into its encrypted Secret"
    )
    migrate.add_argument("name", help="the deployment, <app>-<id>")
    migrate.add_argument("--keys", help="comma separated env names (default: what looks secret)")
    _repo_options(migrate)
    _user_options(migrate)
    migrate.set_defaults(func=cmd_secrets_migrate)

    _storage_commands(sub)

    events = sub.add_parser(
        "events-key", help="the Secret a namespace's Flux Provider signs its events with"
    )
    events.add_argument("namespace", help="group-<group>, or flux-system")
    _repo_options(events)
    events.set_defaults(func=cmd_events_key)

    check = sub.add_parser("validate", help="build and schema-check a GitOps repository")
    check.add_argument("path")
    check.set_defaults(func=cmd_validate)

    chart = sub.add_parser("chart", help="the shipped chart").add_subparsers(
        dest="action", required=True
    )
    chart_push = chart.add_parser(
        "push", help="package the chart and push it to the OCI registry (chart.source = oci)"
    )
    chart_push.add_argument("--url", help="oci://host:port/path/generic-app (chart.oci_url)")
    chart_push.add_argument(
        "--plain-http",
        action=argparse.BooleanOptionalAction,
        help="plain HTTP registry (default: chart.oci_insecure)",
    )
    chart_push.add_argument("--username", help="registry user (with --password-stdin)")
    chart_push.add_argument(
        "--password-stdin", action="store_true", help="read the registry password from stdin"
    )
    chart_push.set_defaults(func=cmd_chart_push)
    return root


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except BridgeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        for problem in exc.problems:
            if str(problem) != exc.message:  # a one-field error is its own message
                print(f"  {problem}", file=sys.stderr)
        return 2 if not exc.retryable else 3
    return result


if __name__ == "__main__":
    sys.exit(main())
