"""The Storage tab and the deployment form's volumes as server-rendered pages: members see
their group's quota, volumes and images, non-members get 404; every form posts with the CSRF
token and redirects with a flash, a refused one renders the page again with the message next
to its form and writes nothing."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.apputil import as_user, make_app, session_token
from tests.gitutil import git, head
from tests.registryutil import (
    OCI_MANIFEST,
    RegistryServer,
    layer,
    listed_tags,
    push_image,
    push_manifest,
)

ADMIN = as_user("admin")
ALICE = as_user("alice")
MALLORY = as_user("mallory")
CLASSES = [
    {"name": "standard", "access_modes": ["ReadWriteOnce"], "expandable": True},
    {
        "name": "shared",
        "access_modes": ["ReadWriteMany", "ReadOnlyMany"],
        "expandable": False,
        "description": "NFS",
    },
]
STORAGE = {"classes": CLASSES}
TEAM_A: dict[str, Any] = {
    "name": "team-a",
    "members": ["alice"],
    "quota": {"cpu": "4", "memory": "8Gi", "storage": "10Gi", "deployments": 5},
}
IMAGE = "registry:5000/team-a/web:1.0"


class Page:
    """A rendered page as the tests read it."""

    def __init__(self, response: Any) -> None:
        self.status: int = response.status_code
        self.text: str = response.get_data(as_text=True)

    def testid(self, name: str) -> list[str]:
        """The text of every element with this data-testid, spaces collapsed."""
        reader = _Texts(name)
        reader.feed(self.text)
        return [" ".join(text.split()) for text in reader.found]

    def errors(self) -> list[str]:
        found = re.findall(r'class="field-error"[^>]*>(.*?)</span>', self.text, re.S)
        return [html.unescape(re.sub(r"\s+", " ", f)).strip() for f in found]

    def flashes(self) -> list[str]:
        found = re.findall(r'<div class="flash [a-z]+" role="status">(.*?)</div>', self.text, re.S)
        return [html.unescape(f).strip() for f in found]

    def rows(self, kind: str) -> list[str]:
        return re.findall(rf'data-testid="{kind}-row" data-(?:name|key)="([^"]+)"', self.text)


class _Texts(HTMLParser):
    """Collects the text inside elements with a data-testid (nested elements included)."""

    VOID = frozenset({"input", "br", "img", "meta", "link", "hr", "source", "wbr"})

    def __init__(self, testid: str) -> None:
        super().__init__()
        self.testid = testid
        self.found: list[str] = []
        self._open: list[list[int]] = []  # [index in found, depth of elements inside it]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.VOID:
            return
        for item in self._open:
            item[1] += 1
        if dict(attrs).get("data-testid") == self.testid:
            self.found.append("")
            self._open.append([len(self.found) - 1, 0])

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        for item in self._open:
            item[1] -= 1
        self._open = [item for item in self._open if item[1] >= 0]

    def handle_data(self, data: str) -> None:
        for index, _ in self._open:
            self.found[index] += data


class Browser:
    """One user's session: pages, and forms posted with that session's CSRF token."""

    def __init__(self, client: FlaskClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers
        self._token = ""

    def get(self, path: str) -> Page:
        return Page(self.client.get(path, headers=self.headers))

    def token(self) -> str:
        if not self._token:
            page = self.get("/deployments/new").text
            match = re.search(r'name="csrf_token" value="([^"]+)"', page)
            if match is None and 'data-testid="no-access"' in page:  # in no group: no form
                self._token = session_token(self.client, self.headers["X-Forwarded-User"])
                return self._token
            assert match, "no form on the page"
            self._token = match.group(1)
        return self._token

    def post(self, path: str, data: dict[str, Any], *, token: bool = True) -> Any:
        form = data | ({"csrf_token": self.token()} if token else {})
        return self.client.post(path, data=form, headers=self.headers)

    def follow(self, path: str, data: dict[str, Any]) -> Page:
        """Post, expect the redirect, and read the page it leads to (with the flash)."""
        response = self.post(path, data)
        assert response.status_code == 302, response.get_data(as_text=True)[-3000:]
        return self.get(response.headers["Location"])


@pytest.fixture
def client(tmp_path: Path) -> FlaskClient:
    client = make_app(tmp_path / "data", storage=STORAGE).test_client()
    assert client.post("/api/v1/groups", json=TEAM_A, headers=ADMIN).status_code == 201
    return client


@pytest.fixture
def alice(client: FlaskClient) -> Browser:
    return Browser(client, ALICE)


def remote_of(client: FlaskClient) -> Path:
    return Path(client.application.extensions["gitops_bridge.settings"].data_dir) / "remote.git"


def new_volume(name: str = "data", size: str = "1Gi", **fields: str) -> dict[str, str]:
    return {"name": name, "size": size, "storageClass": "standard"} | fields


def deployment(**fields: Any) -> dict[str, Any]:
    form = {
        "group": "team-a",
        "name": "web",
        "image": IMAGE,
        "replicas": "1",
        "port": "8080",
        "cpu": "100m",
        "memory": "128Mi",
        "expose": "on",
    }
    return form | fields


# ---- the page -------------------------------------------------------------------------------


def test_members_see_their_groups_storage_and_others_get_404(
    client: FlaskClient, alice: Browser
) -> None:
    page = alice.get("/storage")  # alice has one group: she lands on it
    assert page.status == 200
    assert "<title>Storage of team-a" in page.text
    assert 'aria-current="page">Storage</a>' in page.text
    assert page.testid("usage-volumes") == ["0"]
    assert page.testid("usage-free") == ["10Gi"] and page.testid("usage-quota") == ["10Gi"]
    assert page.testid("no-volumes") == ["No volumes in team-a yet."]
    assert page.testid("images-note") == [
        "No registry is configured: there are no images to list or count."
    ]
    assert 'name="keep"' not in page.text  # no registry: no retention form
    # the classes offered, with the access modes of each for the script to filter
    assert '<option value="shared" data-modes="ReadWriteMany ReadOnlyMany">shared — NFS' in (
        page.text
    )

    admin = Browser(client, ADMIN).get("/storage")  # two groups (demo, team-a): a choice
    assert admin.status == 200 and "Choose a group" in admin.text
    assert 'href="/storage?group=team-a"' in admin.text and "usage-volumes" not in admin.text

    mallory = Browser(client, MALLORY)
    assert mallory.get("/storage").status == 200
    assert "not a member of any group" in mallory.get("/storage").text
    hidden = mallory.get("/storage?group=team-a")
    missing = mallory.get("/storage?group=team-q")
    assert hidden.status == missing.status == 404
    assert hidden.text.replace("team-a", "X") == missing.text.replace("team-q", "X")
    remote = remote_of(client)
    before = head(remote)
    for path, form in (
        ("/storage/team-a/volumes", new_volume("sneaky")),
        ("/storage/team-a/volumes/data/resize", {"size": "2Gi"}),
        ("/storage/team-a/volumes/data/delete", {"confirm": "data"}),
        ("/storage/team-a/images/retention", {"keep": "1"}),
    ):
        assert mallory.post(path, form).status_code == 404, path
    assert head(remote) == before


def test_a_volume_is_created_grown_and_deleted_through_the_forms(
    client: FlaskClient, alice: Browser
) -> None:
    remote = remote_of(client)
    page = alice.follow("/storage/team-a/volumes", new_volume("data", "2Gi"))
    assert re.fullmatch(
        r"Created volume data \(2Gi, ReadWriteOnce\): committed [0-9a-f]{7}", page.flashes()[0]
    )
    assert git(remote, "log", "-1", "--format=%an|%s", "main").strip() == (
        "alice|Create volume data in team-a"
    )
    assert page.rows("volume") == ["data"]
    assert page.testid("usage-volumes") == ["2Gi"] and page.testid("usage-free") == ["8Gi"]
    row = page.text.split('data-testid="volume-row" data-name="data"')[1].split("</tr>")[0]
    assert "standard" in row and "ReadWriteOnce" in row and "not read" in row  # no cluster

    page = alice.follow("/storage/team-a/volumes/data/resize", {"size": "3Gi"})
    assert re.fullmatch(r"Volume data is 3Gi: committed [0-9a-f]{7}", page.flashes()[0])
    assert page.testid("usage-volumes") == ["3Gi"]
    page = alice.follow("/storage/team-a/volumes/data/resize", {"size": "3Gi"})
    assert page.flashes() == ["Volume data is 3Gi: nothing to change, main has it already"]

    page = alice.follow("/storage/team-a/volumes/data/delete", {"confirm": "data"})
    assert re.fullmatch(
        r"Volume data released: committed [0-9a-f]{7} — delete again once Flux applied it to "
        r"remove the claim and its data",
        page.flashes()[0],
    )
    row = page.text.split('data-testid="volume-row" data-name="data"')[1].split("</tr>")[0]
    assert "released — delete again once Flux applied it" in row
    assert "Delete data now" in row and "Grow" not in row
    page = alice.follow("/storage/team-a/volumes/data/delete", {"confirm": "data"})
    assert re.fullmatch(
        r"Deleted volume data: committed [0-9a-f]{7}; Flux deletes the claim and its data",
        page.flashes()[0],
    )
    assert page.rows("volume") == [] and page.testid("usage-volumes") == ["0"]
    assert git(remote, "log", "-1", "--format=%s", "main").strip() == (
        "Delete volume data of team-a and its data"
    )


def test_refused_volume_forms_show_the_message_at_the_form_and_write_nothing(
    client: FlaskClient, alice: Browser
) -> None:
    remote = remote_of(client)
    alice.follow("/storage/team-a/volumes", new_volume("data", "2Gi"))
    shared = new_volume("docs", "1Gi", storageClass="shared", accessMode="ReadWriteMany")
    alice.follow("/storage/team-a/volumes", shared)
    before = head(remote)

    refused = alice.post("/storage/team-a/volumes", new_volume("My_Data"))
    page = Page(refused)
    assert page.status == 422
    assert page.testid("storage-error") == ["1 field needs attention: see the messages below."]
    assert page.errors() == [
        "Must be a DNS label (a-z, 0-9, '-'; start with a letter, end with a letter or "
        "digit; max 59), got 'My_Data'."
    ]
    assert 'name="name" value="My_Data"' in page.text  # typed values shown again

    page = Page(alice.post("/storage/team-a/volumes", new_volume("big", "20Gi")))
    assert page.status == 422
    assert page.testid("create-error") == [
        "Storage quota of group team-a exceeded: volumes 3Gi + images 0 + requested "
        "20Gi = 23Gi, allowed 10Gi; free space in the Storage tab (old image tags, unused "
        "volumes), or ask a platform admin to raise the quota."
    ]
    page = Page(alice.post("/storage/team-a/volumes", new_volume("x", accessMode="ReadWriteMany")))
    assert page.status == 422
    assert page.errors() == ["Class standard offers ReadWriteOnce, got ReadWriteMany."]
    assert '<option value="ReadWriteMany" selected>' in page.text
    page = Page(alice.post("/storage/team-a/volumes", new_volume("data")))
    assert page.status == 409
    assert page.testid("create-error") == ["Name: a volume named 'data' exists in group team-a."]

    # grow: only up, and only on an expandable class (the shared one has no Grow form)
    page = Page(alice.post("/storage/team-a/volumes/data/resize", {"size": "1Gi"}))
    assert page.status == 422
    assert page.testid("volume-error") == ["Size: must not shrink: volumes only grow (now 2Gi)."]
    assert 'id="size-data" name="size" value="1Gi"' in page.text
    assert 'id="size-docs"' not in page.text and "fixed size" in page.text
    page = Page(alice.post("/storage/team-a/volumes/docs/resize", {"size": "2Gi"}))
    assert page.status == 422
    assert page.testid("volume-error") == ["Size: class shared does not allow volumes to grow."]

    # delete: the name must be typed
    page = Page(alice.post("/storage/team-a/volumes/data/delete", {"confirm": "dat"}))
    assert page.status == 422
    assert page.testid("volume-error") == [
        "Confirm: type the volume's name (data) to delete it and all its data."
    ]
    assert re.search(r'<details class="delete-volume" open>\s*<summary>Delete…', page.text)
    missing = Page(alice.post("/storage/team-a/volumes/nope/delete", {"confirm": "nope"}))
    assert missing.status == 404
    assert missing.testid("storage-error") == ["volume 'nope' not found in group team-a"]
    assert head(remote) == before


def test_forms_need_the_csrf_token_of_the_user(client: FlaskClient, alice: Browser) -> None:
    remote = remote_of(client)
    before = head(remote)
    for path, form in (
        ("/storage/team-a/volumes", new_volume()),
        ("/storage/team-a/volumes/data/resize", {"size": "2Gi"}),
        ("/storage/team-a/volumes/data/delete", {"confirm": "data"}),
        ("/storage/team-a/images/team-a/web/tags/1.0/delete", {}),
        ("/storage/team-a/images/retention", {"keep": "1"}),
    ):
        response = alice.post(path, form, token=False)
        assert response.status_code == 403, path
        assert "did not come from this site" in response.get_data(as_text=True)
    admins = Browser(client, ADMIN).token()  # bound to admin, worth nothing to alice
    forged = alice.post(
        "/storage/team-a/volumes", new_volume() | {"csrf_token": admins}, token=False
    )
    assert forged.status_code == 403
    assert head(remote) == before


# ---- the deployment form: mounts --------------------------------------------------------------


def test_the_deployment_form_mounts_volumes_and_the_card_lists_them(
    client: FlaskClient, alice: Browser
) -> None:
    remote = remote_of(client)
    alice.follow("/storage/team-a/volumes", new_volume("data"))
    alice.follow(
        "/storage/team-a/volumes",
        new_volume("docs", storageClass="shared", accessMode="ReadOnlyMany"),
    )
    form = alice.get("/deployments/new?group=team-a")
    assert re.findall(r'<option value="(team-a/[^"]+)" data-group="team-a">', form.text) == [
        "team-a/data",
        "team-a/docs",
    ]
    before = head(remote)

    # a ReadWriteOnce volume: one replica; the messages sit next to their fields
    mounts = {
        "mount_volume": ["team-a/data", "team-a/docs", ""],
        "mount_path": ["/var/lib/app", "docs", ""],
        "mount_mode": ["rw", "ro", "rw"],
    }
    page = Page(alice.post("/deployments/new", deployment() | mounts))
    assert page.status == 422
    assert page.errors() == [
        "Row 2 mount path: must be an absolute path other than / (no '..' segment, no ':'; max "
        "1024), got 'docs'."
    ]
    rows = page.text.split('data-testid="mount-row"')[1:]
    assert len(rows) == 2  # the empty third row is dropped
    assert '<option value="team-a/data" data-group="team-a" selected>' in rows[0]
    assert 'value="/var/lib/app"' in rows[0] and "field-error" not in rows[0]
    assert '<option value="ro" selected>' in rows[1] and 'data-field="volumes[1].path"' in rows[1]
    fixed = {"mount_path": ["/var/lib/app", "/srv/docs", ""]}
    page = Page(alice.post("/deployments/new", deployment(replicas="2") | mounts | fixed))
    assert page.status == 422
    assert page.errors() == [
        "Must be 0 or 1: volume 'data' is ReadWriteOnce (one pod mounts it); put the "
        "data on a ReadWriteMany class for more replicas."
    ]
    assert 'data-field="replicas"' in page.text.split('name="replicas"')[1].split("</label>")[0]
    elsewhere = {"mount_volume": ["demo/cache"], "mount_path": ["/cache"], "mount_mode": ["rw"]}
    page = Page(alice.post("/deployments/new", deployment() | elsewhere))
    assert page.errors() == [
        "Row 1 volume: demo/cache is a volume of group demo; this deployment is in team-a."
    ]
    assert head(remote) == before

    cards = alice.follow("/deployments/new", deployment() | mounts | fixed)
    name = re.findall(r"Deployed (web-[a-z0-9]{6})", cards.flashes()[0])[0]
    assert cards.testid("mount") == [
        "data → /var/lib/app (ReadWriteOnce)",
        "docs → /srv/docs (ReadOnlyMany, read-only)",
    ]
    spec: Any = client.get(f"/api/v1/deployments/{name}", headers=ALICE).json
    assert spec["volumes"] == [
        {"volume": "data", "path": "/var/lib/app", "readOnly": False},
        {"volume": "docs", "path": "/srv/docs", "readOnly": True},
    ]

    # the edit form shows them; unmounting one is a row left empty
    edit = alice.get(f"/deployments/{name}/edit")
    assert '<option value="team-a/docs" data-group="team-a" selected>' in edit.text
    assert 'value="/srv/docs"' in edit.text
    one = {"mount_volume": ["team-a/data", ""], "mount_path": ["/var/lib/app", ""]}
    alice.follow(f"/deployments/{name}/edit", deployment() | one | {"mount_mode": ["rw", "rw"]})
    spec = client.get(f"/api/v1/deployments/{name}", headers=ALICE).json
    assert spec["volumes"] == [{"volume": "data", "path": "/var/lib/app", "readOnly": False}]

    # a mounted volume stays: the refusal names who mounts it
    storage = alice.get("/storage?group=team-a")
    row = storage.text.split('data-testid="volume-row" data-name="data"')[1].split("</tr>")[0]
    assert name in row and "unmount it there first" in row
    page = Page(alice.post("/storage/team-a/volumes/data/delete", {"confirm": "data"}))
    assert page.status == 409
    assert page.testid("volume-error") == [
        f"Volume data is mounted by {name}: unmount it there first."
    ]


# ---- images (a real registry) -------------------------------------------------------------------


@pytest.fixture
def with_registry(tmp_path: Path, registry_server: RegistryServer) -> FlaskClient:
    settings = {"registry": {"url": registry_server.url, "cache_seconds": 0}, "storage": STORAGE}
    client = make_app(tmp_path / "data", **settings).test_client()
    small = TEAM_A | {"quota": TEAM_A["quota"] | {"storage": "1Gi"}}
    assert client.post("/api/v1/groups", json=small, headers=ADMIN).status_code == 201
    return client


def test_images_list_delete_and_retention_as_previewed(
    with_registry: FlaskClient, registry_server: RegistryServer
) -> None:
    base = registry_server.url
    for tag, month in (("1.0", "01"), ("1.1", "02"), ("1.2", "03")):
        latest = push_image(base, "team-a/web", tag, created=f"2024-{month}-01T00:00:00Z")
    alice = Browser(with_registry, ALICE)
    alice.follow("/deployments/new", deployment(image=IMAGE.replace("1.0", "1.1")))

    page = alice.get("/storage?group=team-a")
    assert page.rows("tag") == ["team-a/web:1.2", "team-a/web:1.1", "team-a/web:1.0"]
    assert (
        re.findall(r"in use by web-[a-z0-9]{6}", page.text)
        and page.text.count('data-testid="in-use"') == 1
    )
    assert 'aria-label="Delete team-a/web:1.1"' not in page.text  # in use: no button
    assert 'aria-label="Delete team-a/web:1.0"' in page.text

    preview = alice.get("/storage?group=team-a&keep=1")
    assert preview.status == 200
    assert [t.split(" ")[0] for t in preview.testid("retention-tag")] == ["team-a/web:1.0"]
    assert preview.testid("reclaim")[0].startswith("A registry garbage collection would then")

    # a tag pushed after the preview: "Delete these" refuses and shows the new list
    push_image(base, "team-a/web", "0.9", created="2023-12-01T00:00:00Z")
    previewed = {"keep": "1", "tag": ["team-a/web:1.0"]}
    stale = Page(alice.post("/storage/team-a/images/retention", previewed))
    assert stale.status == 409
    assert "changed since the preview" in stale.testid("storage-error")[0]
    going = [t.split(" ")[0] for t in stale.testid("retention-tag")]
    assert going == ["team-a/web:1.0", "team-a/web:0.9"]
    assert listed_tags(base, "team-a/web") == ["0.9", "1.0", "1.1", "1.2"]

    page = alice.follow("/storage/team-a/images/retention", {"keep": "1", "tag": going})
    assert re.fullmatch(
        r"Deleted 2 tags beyond the newest 1 of each repository; a registry garbage "
        r"collection would reclaim [0-9.]+ (B|Ki)",
        page.flashes()[0],
    )
    assert listed_tags(base, "team-a/web") == ["1.1", "1.2"]

    refused = Page(alice.post("/storage/team-a/images/team-a/web/tags/1.1/delete", {}))
    assert refused.status == 409
    assert re.fullmatch(
        r"team-a/web:1\.1 is used by web-[a-z0-9]{6}: it stays", refused.testid("tag-error")[0]
    )
    # another tag of the same image goes with it, and the list says so beforehand
    push_manifest(base, "team-a/web", "stable", latest.manifest, OCI_MANIFEST)
    page = alice.get("/storage?group=team-a")
    assert sorted(page.rows("tag")) == ["team-a/web:1.1", "team-a/web:1.2", "team-a/web:stable"]
    assert 'title="deleting one deletes the others">= stable</span>' in page.text
    page = alice.follow("/storage/team-a/images/team-a/web/tags/1.2/delete", {})
    assert re.fullmatch(
        r"Deleted team-a/web:1\.2 \(and stable: the same image\); a registry garbage collection "
        r"would reclaim [0-9.]+ (B|Ki)",
        page.flashes()[0],
    )
    assert page.rows("tag") == ["team-a/web:1.1"]
    assert listed_tags(base, "team-a/web") == ["1.1"]


def test_a_group_over_its_quota_is_told_why_its_deployments_are_refused(
    with_registry: FlaskClient, registry_server: RegistryServer
) -> None:
    alice = Browser(with_registry, ALICE)
    alice.follow("/storage/team-a/volumes", new_volume("data", "1Gi"))  # all of the quota
    assert alice.get("/storage?group=team-a").testid("over-quota") == []
    push_image(registry_server.url, "team-a/web", "1.0", layers=[layer({"a": b"x" * 4096})])
    page = alice.get("/storage?group=team-a")
    banner = page.testid("over-quota")
    assert banner and banner[0].startswith("team-a is over its storage quota by ")
    assert "new deployments of its images are refused until it frees space" in banner[0]
    refused = Page(alice.post("/deployments/new", deployment()))
    assert refused.status == 422
    assert "new deployments of its images wait until it frees space" in refused.text
