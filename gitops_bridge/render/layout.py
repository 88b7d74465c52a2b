"""Where things live in the GitOps repository, and the labels that mark them."""

from __future__ import annotations

TENANTS_DIR = "tenants"
APPS_DIR = "apps"
DOMAIN = "gitops-bridge.code-hub.com"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "gitops-bridge"
LABEL_GROUP = f"{DOMAIN}/group"
LABEL_APP = f"{DOMAIN}/app"
LABEL_ID = f"{DOMAIN}/deployment-id"
ANNOTATION_MEMBERS = f"{DOMAIN}/members"
ANNOTATION_QUOTA = f"{DOMAIN}/quota"
ANNOTATION_ADMINS = f"{DOMAIN}/admins"
ANNOTATION_REVIEW = f"{DOMAIN}/review"
ANNOTATION_OWNER = f"{DOMAIN}/owner"
ANNOTATION_RESTARTED_AT = f"{DOMAIN}/restartedAt"
ANNOTATION_SECRETS = f"{DOMAIN}/secrets"  # who set which secret value when (no values)
ANNOTATION_RECIPIENT = f"{DOMAIN}/age-recipient"
# kustomize-controller leaves an object carrying this alone when it prunes
ANNOTATION_PRUNE = "kustomize.toolkit.fluxcd.io/prune"
SERVICE_ACCOUNT = "flux-reconciler"  # the group's account, impersonated by Flux
GROUP_FILES = ("namespace.yaml", "quota.yaml", "rbac.yaml", "networkpolicy.yaml")
SYNC_FILE = "sync.yaml"  # the group's GitRepository + Kustomization (applies apps/)
NOTIFICATIONS_FILE = "notifications.yaml"  # the group's Flux Provider + Alert
OCI_SOURCE_FILE = "source.yaml"
GROUP_KEY_FILE = "sops-age.yaml"  # the group's age identity, SOPS-encrypted (render.secrets)
FRP_FILE = "frp-token.yaml"  # the frpc credentials of the group, SOPS-encrypted
PLATFORM_FILES = (
    *GROUP_FILES,
    SYNC_FILE,
    NOTIFICATIONS_FILE,
    OCI_SOURCE_FILE,
    GROUP_KEY_FILE,
    FRP_FILE,
)
SECRET_SUFFIX = ".secret.yaml"  # apps/<app>-<id>.secret.yaml: a deployment's secret values
CLUSTER_AGE_SECRET = "sops-age"  # in flux-system, made out of band: the cluster's identity
GROUP_AGE_SECRET = "sops-age"  # in each group namespace, from GROUP_KEY_FILE
AGE_KEY = "age.agekey"  # kustomize-controller takes data keys ending in .agekey
CHART_NAME = "generic-app"
GROUP_SOURCE = "gitops"  # GitRepository in each group namespace
GROUP_KUSTOMIZATION = "apps"  # Kustomization in each group namespace
EVENTS_PROVIDER = "gitops-bridge"


def group_dir(group: str) -> str:
    return f"{TENANTS_DIR}/{group}"


def apps_dir(group: str) -> str:
    return f"{TENANTS_DIR}/{group}/{APPS_DIR}"


def folder_of(path: str) -> str | None:
    """The group whose folder (``tenants/<group>/``) a path is in; None: in none."""
    parts = path.split("/", 2)
    if len(parts) < 3 or parts[0] != TENANTS_DIR:
        return None
    return parts[1]
