"""What the pages tell people: someone in no group learns how to get access (no form that
cannot work); a card gives its requests per pod, its limit and the total of all its pods with
the frpc sidecar; the nav links code-hub's Workspaces when configured."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import ValidationError

from gitops_bridge import config
from tests.apputil import TEAM_A, as_user, create_group, deploy, make_app

MALLORY, ALICE = as_user("mallory"), as_user("alice")


def text(html: str) -> str:
    """The page as read: without tags, whitespace collapsed."""
    return re.sub(r" ([).,])", r"\1", " ".join(re.sub(r"<[^>]+>", " ", html).split()))


def test_someone_in_no_group_is_told_how_to_get_access(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    create_group(client)
    page = client.get("/deployments", headers=MALLORY).get_data(as_text=True)
    assert 'data-testid="no-access"' in page
    said = text(page)
    assert "You are not in a group yet" in said
    assert "ask a platform admin (a member of platform-admins)" in said
    assert "to add mallory to your team's group" in said
    assert "New deployment" not in said and "Pick an image" not in said
    assert "No cluster is connected" not in said  # nothing of theirs runs anywhere

    form = client.get("/deployments/new", headers=MALLORY)
    assert form.status_code == 200
    html = form.get_data(as_text=True)
    assert 'data-testid="no-access"' in html and "<form" not in html
    # members still get the form, and the page of cards as before
    assert 'name="group"' in client.get("/deployments/new", headers=ALICE).get_data(True)
    assert "no-access" not in client.get("/deployments", headers=ALICE).get_data(True)


def test_an_admin_without_any_group_is_sent_to_create_one(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data", demo_group=False).test_client()
    page = text(client.get("/deployments/new").get_data(as_text=True))
    assert "There is no group yet" in page and "Create the first one on the Groups page" in page
    alice = text(client.get("/deployments", headers=ALICE).get_data(as_text=True))
    assert "You are not in a group yet" in alice


def _card(client: FlaskClient, name: str) -> str:
    html = client.get("/deployments?group=team-a", headers=ALICE).get_data(as_text=True)
    start = html.index(f'data-name="{name}"')
    return text(html[start : html.index("</article>", start)])


def test_a_card_gives_requests_per_pod_the_limit_and_the_total(tmp_path: Path) -> None:
    client = make_app(tmp_path / "data").test_client()
    quota = {"cpu": "8", "memory": "16Gi", "deployments": 5}
    create_group(client, TEAM_A | {"quota": quota})
    resources = {"cpu": "100m", "memory": "128Mi"}
    exposed = deploy(client, "web", replicas=3, expose=True, resources=resources)
    card = _card(client, exposed)
    # frpc requests 10m / 32Mi: 3 x 110m, 3 x 160Mi
    assert "CPU 100m per pod (limit 200m) 330m total with 3 replicas + frpc" in card
    assert "Memory 128Mi per pod (limit 256Mi) 480Mi total with 3 replicas + frpc" in card
    alone = deploy(client, "api", replicas=1, expose=False, resources={"cpu": "750m"})
    card = _card(client, alone)
    assert "CPU 750m per pod (limit 1.5 cores) Memory" in card  # one pod: that is the total
    stopped = deploy(client, "job", replicas=0, expose=True)
    assert "total" not in _card(client, stopped)  # stopped: nothing runs
    scaled = deploy(client, "worker", replicas=1, expose=True, autoscaling={"min": 1, "max": 3})
    assert "CPU 100m per pod (limit 200m) 330m total with up to 3 replicas + frpc" in _card(
        client, scaled
    )  # autoscaled: the most it may run, as the quota counts it


def test_the_nav_links_workspaces_when_configured(tmp_path: Path) -> None:
    plain = make_app(tmp_path / "plain").test_client().get("/deployments").get_data(True)
    assert "Workspaces" not in plain
    url = "https://code-hub.com/workspaces"
    client = make_app(tmp_path / "data", workspaces_url=url).test_client()
    for path in ("/deployments", "/groups", "/storage"):
        nav = client.get(path).get_data(as_text=True).split("<nav>")[1].split("</nav>")[0]
        links = re.findall(r'<a href="([^"]+)"[^>]*>([^<]+)</a>', nav)
        assert links[:3] == [
            (url, "Workspaces"),
            ("/deployments", "Deployments"),
            ("/storage", "Storage"),
        ]
    with pytest.raises(ValidationError, match="must be an http"):
        config.load(data_dir=tmp_path / "x", workspaces_url="javascript:alert(1)")


def test_a_card_reads_what_the_pods_use_against_their_limits(app: Flask) -> None:
    """The reading the live refresh rewrites (data-field): shown with a metric, else hidden."""
    card = {"resources": {"cpu": "100m", "memory": "128Mi"}, "replicas": 2, "expose": False}
    with app.test_request_context():
        resource = app.jinja_env.get_template("_figures.html").module.resource  # type: ignore[attr-defined]
        read = str(resource(card, "cpu", {"used": "4.4m", "limit": "400m"}))
        unread = str(resource(card, "memory", {"used": None, "limit": "512Mi"}))
    assert (
        text(read)
        == "100m per pod (limit 200m) 200m total with 2 replicas using 4.4m of 400m limit"
    )
    assert '<span class="reading" data-field="cpu">using 4.4m of 400m limit</span>' in read
    assert '<span class="reading hidden" data-field="memory"></span>' in unread
