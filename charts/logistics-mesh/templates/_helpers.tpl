{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "logistics-mesh.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-wide name prefix. A release whose name already contains the chart name is used as is.
*/}}
{{- define "logistics-mesh.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "logistics-mesh.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of one service's objects. Call with (dict "root" $ "name" $name).
*/}}
{{- define "logistics-mesh.serviceName" -}}
{{- printf "%s-%s" (include "logistics-mesh.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels of one service's pods. Call with (dict "root" $ "name" $name).
*/}}
{{- define "logistics-mesh.selectorLabels" -}}
app.kubernetes.io/name: {{ include "logistics-mesh.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{/*
All labels of one service's objects. Call with (dict "root" $ "name" $name).
*/}}
{{- define "logistics-mesh.labels" -}}
helm.sh/chart: {{ include "logistics-mesh.chart" .root }}
{{ include "logistics-mesh.selectorLabels" . }}
app.kubernetes.io/part-of: {{ include "logistics-mesh.name" .root }}
app.kubernetes.io/version: {{ include "logistics-mesh.imageTag" .root | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "logistics-mesh.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | trunc 63 -}}
{{- end }}

{{/*
The one image every service runs; a digest, when given, pins it.
*/}}
{{- define "logistics-mesh.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end }}

{{/*
The compiled entry point of a service inside the image (`npm run build` output). A service
block may name another with `main`.
Call with (dict "name" $name "svc" $svc).
*/}}
{{- define "logistics-mesh.mainScript" -}}
{{- .svc.main | default (printf "dist/services/%s/src/main.js" .name) -}}
{{- end }}

{{/*
NATS_URL: `natsUrl` when set, else the client Service of the bundled NATS chart (named the way
that chart names it).
*/}}
{{- define "logistics-mesh.natsUrl" -}}
{{- if .Values.natsUrl -}}
{{- .Values.natsUrl -}}
{{- else if .Values.nats.enabled -}}
{{- $chart := default "nats" .Values.nats.nameOverride -}}
{{- $full := "" -}}
{{- if .Values.nats.fullnameOverride -}}
{{- $full = .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains $chart .Release.Name -}}
{{- $full = .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $full = printf "%s-%s" .Release.Name $chart | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- printf "nats://%s.%s.svc:%v" $full .Release.Namespace (((.Values.nats.config).nats).port | default 4222) -}}
{{- else -}}
{{- fail "natsUrl is required when nats.enabled is false (the services need NATS JetStream)" -}}
{{- end -}}
{{- end }}

{{/*
Cross-value checks JSON Schema cannot express; fails the install with a clear message.
*/}}
{{- define "logistics-mesh.validate" -}}
{{- $replicas := int .Values.jetstream.streamReplicas -}}
{{- if and .Values.nats.enabled (gt $replicas 1) -}}
{{- $cluster := (.Values.nats.config).cluster | default (dict) -}}
{{- if not $cluster.enabled -}}
{{- fail (printf "jetstream.streamReplicas=%d needs a NATS cluster: set nats.config.cluster.enabled=true (or streamReplicas=1)" $replicas) -}}
{{- end -}}
{{- if gt $replicas (int ($cluster.replicas | default 1)) -}}
{{- fail (printf "jetstream.streamReplicas=%d exceeds nats.config.cluster.replicas=%v" $replicas $cluster.replicas) -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.auth.jwksUrl) (not .Values.auth.keysSecret.name) -}}
{{- fail "set auth.jwksUrl or auth.keysSecret.name: the services verify bearer tokens with those keys" -}}
{{- end -}}
{{- end }}

{{/*
terminationGracePeriodSeconds: the drain delay plus the shutdown grace, rounded up to whole
seconds, plus a margin for closing NATS and flushing telemetry. Always above
SHUTDOWN_GRACE_MS + DRAIN_DELAY_MS, so the kubelet never kills a service mid-drain.
*/}}
{{- define "logistics-mesh.terminationGracePeriodSeconds" -}}
{{- $ms := add (int .Values.shutdown.graceMs) (int .Values.shutdown.drainDelayMs) -}}
{{- add (div (add $ms 999) 1000) (int .Values.shutdown.marginSeconds) -}}
{{- end }}
