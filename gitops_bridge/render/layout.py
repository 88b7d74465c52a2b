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
SERVICE_ACCOUNT = "flux-reconciler"
GROUP_FILES = ("namespace.yaml", "quota.yaml", "rbac.yaml", "networkpolicy.yaml")
OCI_SOURCE_FILE = "source.yaml"
CHART_NAME = "generic-app"


def group_dir(group: str) -> str:
    return f"{TENANTS_DIR}/{group}"
