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

{{/* Standard labels plus .Values.labels (the standard ones win on a clash). */}}
{{- define "generic-app.labels" -}}
{{- $std := dict
  "app.kubernetes.io/name" .Chart.Name
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/managed-by" .Release.Service
  "helm.sh/chart" (printf "%s-%s" .Chart.Name .Chart.Version) -}}
{{- $all := merge (dict) $std (.Values.labels | default dict) -}}
{{- $lines := list -}}
{{- range $k, $v := $all -}}
{{- $lines = append $lines (printf "%s: %s" (include "generic-app.str" $k) (include "generic-app.str" $v)) -}}
{{- end -}}
{{- join "\n" $lines -}}
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

{{/* The frpc subdomain: frpc.subdomain or the release name. */}}
{{- define "generic-app.subdomain" -}}
{{- .Values.frpc.subdomain | default .Release.Name -}}
{{- end -}}
