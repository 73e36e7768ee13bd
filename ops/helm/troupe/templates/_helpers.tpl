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
