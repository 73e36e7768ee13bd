{{/* Names and labels shared by every template. */}}
{{- define "troupe.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "troupe.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "troupe.selectorLabels" -}}
app.kubernetes.io/name: {{ include "troupe.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "troupe.labels" -}}
{{ include "troupe.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "troupe.secretName" -}}
{{- default (include "troupe.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "troupe.headless" -}}
{{- printf "%s-nodes" (include "troupe.fullname" .) -}}
{{- end -}}

{{/* Rolls the pods when the settings change. */}}
{{- define "troupe.configChecksum" -}}
{{- toYaml .Values | sha256sum | trunc 16 | quote -}}
{{- end -}}

{{/* "true" when the nodes get a carts secret (the chart's Secret or an existing one). */}}
{{- define "troupe.hasCartsSecret" -}}
{{- if or .Values.secrets.existingSecret .Values.secrets.cartsSecret -}}true{{- end -}}
{{- end -}}

{{/* What a node cannot start without, said at install rather than by crash-looping pods. */}}
{{- define "troupe.checks" -}}
{{- if and (not .Values.cluster.insecure) (not .Values.tls.existingSecret) -}}
{{- fail "tls.existingSecret is required: a Secret with ca.pem and, for every pod, <pod>.pem and <pod>-key.pem made with troupe certs (ops/README.md); or set cluster.insecure=true for a plaintext trial cluster" -}}
{{- end -}}
{{- if and .Values.redis.url (not (include "troupe.hasCartsSecret" .)) -}}
{{- fail "a cluster (redis.url) needs one carts secret for every node: set secrets.cartsSecret (32 characters or more) or secrets.existingSecret with the key carts-secret" -}}
{{- end -}}
{{- end -}}
