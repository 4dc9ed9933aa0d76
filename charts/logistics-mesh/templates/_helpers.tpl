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
{{- .svc.main | default (printf "services/%s/dist/main.js" .name) -}}
{{- end }}

{{/*
Full name of the bundled NATS chart's objects (its Service, its pods' instance), named the way
that chart names them.
*/}}
{{- define "logistics-mesh.natsFullname" -}}
{{- $chart := default "nats" .Values.nats.nameOverride -}}
{{- if .Values.nats.fullnameOverride -}}
{{- .Values.nats.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains $chart .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $chart | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{/*
Labels of the bundled NATS chart's server pods (its nats.selectorLabels).
*/}}
{{- define "logistics-mesh.natsSelectorLabels" -}}
app.kubernetes.io/name: {{ default "nats" .Values.nats.nameOverride | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: nats
{{- end }}

{{/*
NATS_URL: `natsUrl` when set, else the client Service of the bundled NATS chart, tls:// when the
services verify the servers' certificates.
*/}}
{{- define "logistics-mesh.natsUrl" -}}
{{- if .Values.natsUrl -}}
{{- .Values.natsUrl -}}
{{- else if .Values.nats.enabled -}}
{{- $scheme := ternary "tls" "nats" .Values.natsClient.tls.enabled -}}
{{- printf "%s://%s.%s.svc:%v" $scheme (include "logistics-mesh.natsFullname" .) .Release.Namespace (((.Values.nats.config).nats).port | default 4222) -}}
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
{{- if and .Values.natsClient.tls.enabled (not .Values.natsClient.tls.caSecret.name) -}}
{{- fail "natsClient.tls.enabled needs natsClient.tls.caSecret.name (the CA of the NATS servers' certificates)" -}}
{{- end -}}
{{- include "logistics-mesh.validateRegion" . -}}
{{- end }}

{{/*
Checks of a region's values (docs/regions.md): its name is the bundled NATS's JetStream domain,
peers need a leaf connection, and every outgoing leaf connection keeps the mesh's subjects and
key-value buckets local. Without those deny lists a stream's interest crosses the leaf
connection and a publish is stored in both regions (and may be acknowledged by the wrong one).
*/}}
{{- define "logistics-mesh.validateRegion" -}}
{{- $region := .Values.region -}}
{{- $env := .Values.env | default (dict) -}}
{{- if $region.name -}}
{{- if has $region.name $region.peers -}}
{{- fail (printf "region.peers lists this region (%s) itself" $region.name) -}}
{{- end -}}
{{- range $name, $svc := .Values.services -}}
{{- range $legacy := list "INGEST_REGION" "TRACKING_REGION" -}}
{{- if or (hasKey $env $legacy) (hasKey ($svc.env | default (dict)) $legacy) -}}
{{- fail (printf "%s is set (services.%s or env) while region.name is: the chart sets REGION from region.name; remove %s" $legacy $name $legacy) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.nats.enabled -}}
{{- $nats := .Values.nats.config | default (dict) -}}
{{- $domain := (($nats.jetstream).merge).domain | default "" -}}
{{- if ne $domain $region.name -}}
{{- fail (printf "region.name=%s: set nats.config.jetstream.merge.domain=%s, the JetStream domain the other regions source from (now %q)" $region.name $region.name $domain) -}}
{{- end -}}
{{- $remotes := (($nats.merge).leafnodes).remotes | default (list) -}}
{{- if and $region.peers (not (or ($nats.leafnodes).enabled $remotes)) -}}
{{- fail "region.peers needs a leaf connection between the regions' NATS: nats.config.leafnodes.enabled (this region accepts) or nats.config.merge.leafnodes.remotes (it connects)" -}}
{{- end -}}
{{- $local := list (printf "%s.>" ($env.SUBJECT_PREFIX | default "logistics")) "$KV.>" -}}
{{- range $i, $remote := $remotes -}}
{{- range $list := list "deny_imports" "deny_exports" -}}
{{- range $subject := $local -}}
{{- if not (has $subject (get $remote $list | default (list))) -}}
{{- fail (printf "nats.config.merge.leafnodes.remotes[%d].%s must list %q: the mesh's events and key-value buckets stay in their region and cross only by stream sourcing" $i $list $subject) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
The service's own shutdown deadline in milliseconds (drain delay + grace + close), after which it
exits by itself.
*/}}
{{- define "logistics-mesh.shutdownDeadlineMs" -}}
{{- add (int .Values.shutdown.drainDelayMs) (int .Values.shutdown.graceMs) (int .Values.shutdown.closeMs) -}}
{{- end }}

{{/*
terminationGracePeriodSeconds: the service's own deadline rounded up to whole seconds, plus
`shutdown.marginSeconds` (>= 1), so the kubelet's SIGKILL always comes after the service has
exited by itself (or logged why it could not).
*/}}
{{- define "logistics-mesh.terminationGracePeriodSeconds" -}}
{{- $ms := include "logistics-mesh.shutdownDeadlineMs" . | int -}}
{{- add (div (add $ms 999) 1000) (int .Values.shutdown.marginSeconds) -}}
{{- end }}

{{/*
Seconds a classic (non-native) mesh sidecar waits after SIGTERM: the service's deadline rounded
up, so the proxy outlives the service's drain but stays below terminationGracePeriodSeconds.
*/}}
{{- define "logistics-mesh.proxyWaitSeconds" -}}
{{- $ms := include "logistics-mesh.shutdownDeadlineMs" . | int -}}
{{- div (add $ms 999) 1000 -}}
{{- end }}

{{/*
Node.js heap limit in MiB: heapPercentOfMemoryLimit of the memory limit (Mi or Gi). Empty when
the container has no memory limit. Call with (dict "resources" $resources "percent" $percent).
*/}}
{{- define "logistics-mesh.heapMiB" -}}
{{- $mem := ((.resources).limits).memory | default "" | toString -}}
{{- if $mem -}}
{{- $n := regexFind "^[0-9]+" $mem | int -}}
{{- if hasSuffix "Gi" $mem -}}
{{- $n = mul $n 1024 -}}
{{- end -}}
{{- div (mul $n (int .percent)) 100 -}}
{{- end -}}
{{- end }}
