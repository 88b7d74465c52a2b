{{/*
generic-app.str: a value as a JSON string (or number/bool).

Every value that comes from .Values goes through here and nothing from .Values
is ever evaluated as template text (no `tpl`). JSON is valid YAML (double-quoted
scalar) and valid TOML (basic string). toJson leaves U+007F..U+009F, U+FEFF,
U+FFFE and U+FFFF unescaped; YAML parsers reject or fold those (U+0085 is a
YAML 1.1 line break) and TOML forbids a raw U+007F, so they are escaped as \uXXXX
too: the value arrives byte-for-byte.
*/}}
{{- define "generic-app.str" -}}
{{- $s := toJson . -}}
{{- if regexMatch "[\\x{7f}-\\x{9f}\\x{feff}\\x{fffe}\\x{ffff}]" $s -}}
{{- range $c := concat (untilStep 127 160 1) (list 65279 65534 65535) -}}
{{- $s = replace (printf "%c" $c) (printf "\\u%04x" $c) $s -}}
{{- end -}}
{{- end -}}
{{- $s -}}
{{- end -}}

{{/* The selector: one release per namespace, so the instance label is enough. */}}
{{- define "generic-app.selectorLabels" -}}
app.kubernetes.io/instance: {{ include "generic-app.str" .Release.Name }}
{{- end -}}

{{/*
generic-app.chart: the helm.sh/chart label value, written as Helm's own scaffold writes it
(helm/helm pkg/chart/v2/util/create.go, defaultHelpers "<CHARTNAME>.chart":
`printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-"`).
Flux hands the chart a version with build metadata: source-controller packages a chart from
a GitRepository with reconcileStrategy Revision as <version>+<12 hex of the commit>
(fluxcd/source-controller internal/controller/helmchart_controller.go, VersionMetadata), and
helm-controller versions a chart from an OCIRepository <version>+<12 hex of the digest>
(fluxcd/helm-controller internal/controller/helmrelease_controller.go,
mutateChartWithSourceRevision). '+' is not allowed in a label value, which must also end
alphanumeric (kubernetes/apimachinery pkg/util/validation/validation.go IsValidLabelValue),
so whatever trunc leaves at the end that is not alphanumeric is cut as well.
*/}}
{{- define "generic-app.chart" -}}
{{- $label := printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 -}}
{{- regexReplaceAll "[^A-Za-z0-9]+$" $label "" -}}
{{- end -}}

{{/* Sorted `key: value` lines of a label map, keys and values through generic-app.str. */}}
{{- define "generic-app.labelLines" -}}
{{- $lines := list -}}
{{- range $k, $v := . -}}
{{- $lines = append $lines (printf "%s: %s" (include "generic-app.str" $k) (include "generic-app.str" $v)) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/*
Labels of the pod template: only labels that never change with the chart version or the
commit (selector, app name, managed-by and the bridge's .Values.labels). A pod template that
changes restarts every pod, so helm.sh/chart stays off it: a new chart version (or, with
reconcileStrategy Revision, any commit) must not restart anyone's pods.
The standard labels win over .Values.labels on a clash.
*/}}
{{- define "generic-app.podLabels" -}}
{{- $std := dict
  "app.kubernetes.io/name" .Chart.Name
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/managed-by" .Release.Service -}}
{{- include "generic-app.labelLines" (merge (dict) $std (.Values.labels | default dict)) -}}
{{- end -}}

{{/* Labels of every object: the pod labels plus helm.sh/chart. */}}
{{- define "generic-app.labels" -}}
{{- $std := dict
  "app.kubernetes.io/name" .Chart.Name
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/managed-by" .Release.Service
  "helm.sh/chart" (include "generic-app.chart" .) -}}
{{- include "generic-app.labelLines" (merge (dict) $std (.Values.labels | default dict)) -}}
{{- end -}}

{{/* Object metadata shared by every object: name = the release name. */}}
{{- define "generic-app.metadata" -}}
name: {{ include "generic-app.str" .Release.Name }}
namespace: {{ include "generic-app.str" .Release.Namespace }}
labels:
  {{- include "generic-app.labels" . | nindent 2 }}
{{- end -}}

{{/* Pod Security "restricted" container securityContext. */}}
{{- define "generic-app.containerSecurityContext" -}}
allowPrivilegeEscalation: false
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end -}}

{{/* A readiness/liveness probe from a probes.* value (tcp | http). */}}
{{- define "generic-app.probe" -}}
{{- if eq .type "http" -}}
httpGet:
  path: {{ include "generic-app.str" .path }}
  port: http
{{- else -}}
tcpSocket:
  port: http
{{- end }}
initialDelaySeconds: {{ .initialDelaySeconds | int64 }}
periodSeconds: {{ .periodSeconds | int64 }}
failureThreshold: {{ .failureThreshold | int64 }}
{{- end -}}

{{/*
generic-app.argv: a list of strings (command, args) as YAML list items, each through
generic-app.str with every $ written as $$: the kubelet expands $(VAR) in command and args as
in env values (kubernetes/kubernetes pkg/kubelet/container/helpers.go
ExpandContainerCommandAndArgs), so the process gets the words exactly as given.
*/}}
{{- define "generic-app.argv" -}}
{{- $lines := list -}}
{{- range . -}}
{{- $lines = append $lines (printf "- %s" (include "generic-app.str" (. | replace "$" "$$"))) -}}
{{- end -}}
{{- join "\n" $lines -}}
{{- end -}}

{{/*
generic-app.autoscaled: "true" when a HorizontalPodAutoscaler sets the replicas (autoscaling
enabled and replicas not 0). replicas 0 stops the app without an autoscaler: the HPA controller
would not scale a target at 0 replicas anyway ("scaling is disabled since the replica count of
the target is zero", kubernetes/kubernetes pkg/controller/podautoscaler/horizontal.go).
*/}}
{{- define "generic-app.autoscaled" -}}
{{- $scaling := .Values.autoscaling | default dict -}}
{{- if and $scaling.enabled (ne (.Values.replicas | int64) 0) }}true{{ end -}}
{{- end -}}

{{/* The frpc subdomain: frpc.subdomain or the release name. */}}
{{- define "generic-app.subdomain" -}}
{{- .Values.frpc.subdomain | default .Release.Name -}}
{{- end -}}

{{/*
generic-app.frpcConfig: frpc.toml (frp 0.65 TOML), the data of the frpc ConfigMap. frpc
itself renders {{ "{{ .Envs.NAME }}" }} from its environment: the token and the group key
come from a Secret, never from this ConfigMap. The proxy name is prefixed by frp with
`user` (the pod name), so every replica registers a unique proxy; the shared group makes
them one subdomain. The Deployment's checksum annotation hashes exactly this text, so only a
change of the config (not of the ConfigMap's labels) restarts the pods.
*/}}
{{- define "generic-app.frpcConfig" -}}
{{- $name := .Release.Name -}}
serverAddr = {{ include "generic-app.str" .Values.frpc.serverAddr }}
serverPort = {{ .Values.frpc.serverPort | int64 }}
user = "{{ "{{ .Envs.POD_NAME }}" }}"
loginFailExit = false
auth.method = "token"
auth.token = "{{ "{{ .Envs.FRP_TOKEN }}" }}"

[[proxies]]
name = {{ include "generic-app.str" $name }}
type = "http"
localIP = "127.0.0.1"
localPort = {{ .Values.port | int64 }}
subdomain = {{ include "generic-app.str" (include "generic-app.subdomain" .) }}
loadBalancer.group = {{ include "generic-app.str" $name }}
loadBalancer.groupKey = "{{ "{{ .Envs.FRP_GROUP_KEY }}" }}"
# Registered only while the app accepts connections, so frps never routes
# to a replica that is starting, stopping or dead.
healthCheck.type = "tcp"
healthCheck.timeoutSeconds = 3
healthCheck.maxFailed = 3
healthCheck.intervalSeconds = 10
{{- end -}}
