{{/*
Names. Kubernetes names are at most 63 characters; the longest suffix added to the
full name is "-controller" (11), so the full name is cut to 52.
*/}}
{{- define "eddy.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "eddy.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eddy.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels; call with (dict "ctx" $ "component" "worker"), or without
"component" for objects every role shares.
*/}}
{{- define "eddy.labels" -}}
helm.sh/chart: {{ include "eddy.chart" .ctx }}
{{ include "eddy.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: eddy
{{- end }}

{{- define "eddy.selectorLabels" -}}
app.kubernetes.io/name: {{ include "eddy.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "eddy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "eddy.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "eddy.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret this chart renders (admin key, external Redis URL). */}}
{{- define "eddy.secretName" -}}
{{- include "eddy.fullname" . }}
{{- end }}

{{- define "eddy.adminKeySecretName" -}}
{{- default (include "eddy.secretName" .) .Values.auth.existingSecret }}
{{- end }}

{{- define "eddy.adminKeySecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}admin-key{{ end }}
{{- end }}

{{/*
The admin key to store: the given one, else the one already in the cluster (so an
upgrade keeps it), else a new random one.
*/}}
{{- define "eddy.adminKey" -}}
{{- if .Values.auth.adminKey }}
{{- .Values.auth.adminKey }}
{{- else }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "eddy.secretName" .) }}
{{- if and $existing $existing.data (index $existing.data "admin-key") }}
{{- index $existing.data "admin-key" | b64dec }}
{{- else }}
{{- randAlphaNum 48 }}
{{- end }}
{{- end }}
{{- end }}

{{- define "eddy.redisName" -}}
{{- printf "%s-redis" (include "eddy.fullname" .) }}
{{- end }}

{{/*
Checks the Redis choice even when schema validation is skipped: exactly one of the
bundled Redis and an external one, and a cluster only when external.
*/}}
{{- define "eddy.validateRedis" -}}
{{- $external := or .Values.redis.url .Values.redis.existingSecret }}
{{- if and .Values.redis.bundled.enabled $external }}
{{- fail "redis: set either redis.bundled.enabled or an external redis.url / redis.existingSecret, not both" }}
{{- end }}
{{- if not (or .Values.redis.bundled.enabled $external) }}
{{- fail "redis: enable redis.bundled or give an external redis.url / redis.existingSecret" }}
{{- end }}
{{- if and .Values.redis.cluster .Values.redis.bundled.enabled }}
{{- fail "redis.cluster: the bundled Redis is a single node; redis.cluster needs an external Redis Cluster" }}
{{- end }}
{{- end }}

{{/* Environment shared by every role; call with (dict "ctx" $ "component" "worker"). */}}
{{/*
EDDY_SECRETS_KEYS from the operator's Secret (gateways seal, workers open);
nothing when none is named: tenants' secrets are then refused.
*/}}
{{- define "eddy.secretsKeysEnv" -}}
{{- with .Values.secrets.existingSecret -}}
- name: EDDY_SECRETS_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.secrets.existingSecretKey }}
{{- end }}
{{- end }}

{{- define "eddy.commonEnv" -}}
{{- $ctx := .ctx }}
{{- include "eddy.validateRedis" $ctx -}}
- name: REDIS_URL
{{- if $ctx.Values.redis.bundled.enabled }}
  value: {{ printf "redis://%s.%s.svc:6379" (include "eddy.redisName" $ctx) $ctx.Release.Namespace | quote }}
{{- else if $ctx.Values.redis.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ $ctx.Values.redis.existingSecret }}
      key: {{ $ctx.Values.redis.existingSecretKey }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ include "eddy.secretName" $ctx }}
      key: redis-url
{{- end }}
{{- if $ctx.Values.redis.cluster }}
- name: EDDY_REDIS_CLUSTER
  value: "true"
{{- end }}
- name: EDDY_LOG
  value: {{ $ctx.Values.log.filter | quote }}
- name: EDDY_LOG_FORMAT
  value: {{ $ctx.Values.log.format | quote }}
{{- with $ctx.Values.ceilings }}
- name: EDDY_CEILINGS
  value: {{ . | quote }}
{{- end }}
{{- with $ctx.Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "eddy-%s" $.component | quote }}
{{- end }}
{{- with $ctx.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Pod-level settings shared by the three roles; call with
(dict "ctx" $ "role" .Values.worker "component" "worker").
*/}}
{{- define "eddy.podSpecCommon" -}}
{{- $ctx := .ctx -}}
serviceAccountName: {{ include "eddy.serviceAccountName" $ctx }}
automountServiceAccountToken: false
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $ctx.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .role.terminationGracePeriodSeconds }}
{{- with .role.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .role.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Pod template metadata; same arguments as eddy.podSpecCommon plus "port". */}}
{{- define "eddy.podMetadata" -}}
labels:
  {{- include "eddy.labels" . | nindent 2 }}
  {{- with .role.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- $annotations := dict }}
{{- if .ctx.Values.metrics.podAnnotations }}
{{- $_ := set $annotations "prometheus.io/scrape" "true" }}
{{- $_ := set $annotations "prometheus.io/port" (toString .port) }}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" }}
{{- end }}
{{- with .checksum }}
{{- $_ := set $annotations "checksum/secret" . }}
{{- end }}
{{- $annotations = merge (deepCopy (default dict .role.podAnnotations)) $annotations }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Probes on /healthz and /readyz of the named port; call with (dict "role" .Values.x "port" "http"). */}}
{{- define "eddy.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  {{- toYaml .role.livenessProbe | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  {{- toYaml .role.readinessProbe | nindent 2 }}
{{- end }}

{{/* A PodDisruptionBudget; call with (dict "ctx" $ "role" .Values.x "component" "x"). */}}
{{- define "eddy.pdb" -}}
{{- if .role.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "eddy.fullname" .ctx }}-{{ .component }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "eddy.labels" . | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .role.pdb.minAvailable) }}
  minAvailable: {{ .role.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .role.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "eddy.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* The controller's in-cluster base URL (KEDA's metrics-api trigger reads /replicas). */}}
{{- define "eddy.controllerURL" -}}
{{- printf "http://%s-controller.%s.svc:%d" (include "eddy.fullname" .) .Release.Namespace (int .Values.controller.port) }}
{{- end }}
