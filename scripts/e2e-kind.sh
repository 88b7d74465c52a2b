#!/usr/bin/env bash
# Opt-in end-to-end test on a real cluster: kind + Flux + gitops-bridge.
# Needs: docker (with a running engine), kind, flux (CLI) and kubectl on PATH.
# It creates a kind cluster, installs Flux locked down for multi-tenancy
# (--no-cross-namespace-refs, --default-service-account=default, as flux2-multi-tenancy
# does), serves the bridge's embedded GitOps repository to the cluster over smart HTTP,
# deploys an image through the API and waits until the bridge reports it running with all
# replicas ready. Cleans up unless KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in docker kind flux kubectl; do
  command -v "$tool" >/dev/null || { echo "SKIP: $tool not found (this test needs a real cluster)"; exit 0; }
done
docker info >/dev/null 2>&1 || { echo "SKIP: no Docker engine is running"; exit 0; }

NAME="${CLUSTER_NAME:-gitops-bridge-e2e}"
WORK=$(mktemp -d)
PORT="${PORT:-18080}"
IMAGE="${IMAGE:-nginxinc/nginx-unprivileged:1.27-alpine}"
cleanup() {
  kill "${BRIDGE_PID:-}" "${DAEMON_PID:-}" 2>/dev/null || true
  [[ "${KEEP:-0}" == 1 ]] || kind delete cluster --name "$NAME" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

source scripts/lib.sh
ensure_venv "."

echo "== kind cluster $NAME"
kind create cluster --name "$NAME" --wait 120s
export KUBECONFIG="$WORK/kubeconfig"
kind get kubeconfig --name "$NAME" > "$KUBECONFIG"
GATEWAY=$(docker network inspect kind -f '{{(index .IPAM.Config 0).Gateway}}')

echo "== flux, locked down"
flux install --timeout 5m
for controller in kustomize-controller helm-controller notification-controller; do
  flags='[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--no-cross-namespace-refs=true"}'
  if [[ "$controller" != notification-controller ]]; then
    flags+=',{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--default-service-account=default"}'
  fi
  kubectl -n flux-system patch deployment "$controller" --type json -p "$flags]"
done
kubectl -n flux-system rollout status deployment --timeout 180s

echo "== gitops-bridge (embedded repository, served to the cluster over smart HTTP)"
GIT_URL="http://$GATEWAY:${GIT_PORT:-18081}/remote.git"
GITOPS_BRIDGE_KUBERNETES__KUBECONFIG="$KUBECONFIG" GITOPS_BRIDGE_KUBERNETES__POLL_INTERVAL=3 \
GITOPS_BRIDGE_FLUX__GIT_URL="$GIT_URL" GITOPS_BRIDGE_FLUX__SOURCE_INTERVAL=30s \
  .venv/bin/gitops-bridge serve --port "$PORT" --data-dir "$WORK/data" > "$WORK/bridge.log" 2>&1 &
BRIDGE_PID=$!
for _ in $(seq 60); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 1; done
scripts/git-http.py "$WORK/data" "${GIT_PORT:-18081}" > "$WORK/git-http.log" 2>&1 &
DAEMON_PID=$!
flux create source git flux-system --url="$GIT_URL" --branch=main --interval=30s
# the root Kustomization acts as kustomize-controller, as flux2-multi-tenancy patches it
flux create kustomization flux-system --source=GitRepository/flux-system --path=./clusters/dev \
  --prune=true --interval=1m --wait=false --service-account=kustomize-controller
# exposure (frp-token) and events (gitops-bridge-events) are not part of this test
api() { curl -fsS -H 'Content-Type: application/json' "http://127.0.0.1:$PORT/api/v1/$1" "${@:2}"; }

echo "== deploy through the API"
NAME_ID=$(api groups/demo/deployments -d "{\"name\":\"hello\",\"image\":\"$IMAGE\",\"replicas\":2,\"port\":8080}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["name"])')
echo "deployment $NAME_ID"
for i in $(seq 120); do
  STATE=$(api "deployments/$NAME_ID" | python3 -c 'import json,sys; s=json.load(sys.stdin)["status"]; print(s["label"], "|", s.get("reason",""), s.get("message",""))')
  echo "[$i] $STATE"
  [[ "$STATE" == "running 2/2"* ]] && { echo "PASS"; exit 0; }
  [[ "$STATE" == failed* ]] && { echo "FAIL: $STATE"; kubectl get ks,gitrepo,hr -A; exit 1; }
  sleep 5
done
echo "FAIL: not running after 10 minutes"; kubectl get ks,gitrepo,hr,deploy,pods -A; tail -50 "$WORK/bridge.log"; exit 1
