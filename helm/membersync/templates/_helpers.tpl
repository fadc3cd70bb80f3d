{{/*
Names, labels and the pieces every workload shares.
*/}}

{{- define "membersync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped base name; role objects append "-<component>". */}}
{{- define "membersync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "membersync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object.  Call with (dict "ctx" $ "component" "api"). */}}
{{- define "membersync.labels" -}}
helm.sh/chart: {{ include "membersync.chart" .ctx }}
{{ include "membersync.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: membersync
{{- end }}

{{/* Selector labels: stable across upgrades, so never the version. */}}
{{- define "membersync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "membersync.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{- define "membersync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "membersync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "membersync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The long-running roles.  key = the values key under .Values.roles;
component = object name suffix and the name the code logs and groups by;
args = what follows `membersync --config FILE`; group/topic = the Kafka
consumer group suffix (<kafka.group_prefix>-<group>, as the code builds it)
and the config key of the topic it consumes, for KEDA; a role without a group
is not a consumer.  credentials: the role calls member systems and gets their
credential env vars and files.
*/}}
{{- define "membersync.roles" -}}
ratelimiter:
  component: ratelimiter
  args: [ratelimiter]
  group: ratelimiter
  topic: sync_requests
connectorCornerstone:
  component: connector-cornerstone
  args: [connector, --system, cornerstone]
  group: connector-cornerstone
  topic: sync_jobs_cornerstone
  credentials: true
connectorConsio:
  component: connector-consio
  args: [connector, --system, consio]
  group: connector-consio
  topic: sync_jobs_consio
  credentials: true
projector:
  component: projector
  args: [projector]
  group: projector
  topic: sync_events
relay:
  component: relay
  args: [relay]
api:
  component: api
  args: [api]
  http: true
{{- end }}

{{/* Where the rendered config file and mounted secrets live in the pods. */}}
{{- define "membersync.configDir" -}}/etc/membersync{{- end }}
{{- define "membersync.configPath" -}}/etc/membersync/membersync.conf{{- end }}
{{- define "membersync.jwtDir" -}}/var/run/secrets/membersync/jwt{{- end }}

{{/* The port the api listens on, taken from config.api.listen ("host:port"). */}}
{{- define "membersync.apiPort" -}}
{{- $p := regexFind "[0-9]+$" .Values.config.api.listen }}
{{- if not $p }}{{ fail "config.api.listen must end in :PORT" }}{{ end }}
{{- $p }}
{{- end }}

{{/*
The config values with what the chart itself decides: the JWT key files are
the mounted secret's paths when secrets.jwt names a Secret.
*/}}
{{- define "membersync.effectiveConfig" -}}
{{- $c := deepCopy .Values.config }}
{{- $jwt := .Values.secrets.jwt }}
{{- if and $jwt.existingSecret $jwt.hs256Key }}
{{- $_ := set $c.api "jwt_hs256_secret_file" (printf "%s/%s" (include "membersync.jwtDir" .) $jwt.hs256Key) }}
{{- end }}
{{- if and $jwt.existingSecret $jwt.rs256PublicKeyKey }}
{{- $_ := set $c.api "jwt_rs256_public_key_file" (printf "%s/%s" (include "membersync.jwtDir" .) $jwt.rs256PublicKeyKey) }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/*
Renders a config dict as a libconfig file: one group per section, strings
quoted with backslash and double quote escaped, whole numbers as integers.
Sections and keys in sorted order, so the file (and its checksum) is stable.
*/}}
{{- define "membersync.libconfig" -}}
# membersync configuration rendered by the Helm chart from .Values.config.
# Same keys as config/membersync.conf; MEMBERSYNC_<SECTION>_<KEY> env vars
# still override them.
{{- range $section, $keys := . }}

{{ $section }} = {
{{- range $k, $v := $keys }}
{{- if kindIs "string" $v }}
  {{ $k }} = "{{ $v | replace "\\" "\\\\" | replace "\"" "\\\"" }}";
{{- else if kindIs "bool" $v }}
  {{ $k }} = {{ ternary "true" "false" $v }};
{{- else if or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) }}
  {{ $k }} = {{ int64 $v }};
{{- else }}
{{- fail (printf "config.%s.%s: only strings, integers and booleans fit the config file" $section $k) }}
{{- end }}
{{- end }}
};
{{- end }}
{{- end }}

{{/* Pod-level security context shared by every pod of the chart. */}}
{{- define "membersync.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.runAsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context: non-root, read-only, no privileges. */}}
{{- define "membersync.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Environment every membersync container gets: the PostgreSQL password (libpq
reads PGPASSWORD) and optionally the whole DSN from an existing Secret, then
the user's extra env.  Call with (dict "ctx" $ "credentials" bool).
*/}}
{{- define "membersync.env" -}}
{{- $pg := .ctx.Values.secrets.postgres }}
{{- if and $pg.existingSecret $pg.passwordKey }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $pg.existingSecret }}
      key: {{ $pg.passwordKey }}
{{- end }}
{{- if and $pg.existingSecret $pg.dsnKey }}
- name: MEMBERSYNC_POSTGRES_DSN
  valueFrom:
    secretKeyRef:
      name: {{ $pg.existingSecret }}
      key: {{ $pg.dsnKey }}
{{- end }}
{{- if .credentials }}
{{- range .ctx.Values.secrets.memberSystems.env }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- with .ctx.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Volume mounts and volumes: the config file, a writable /tmp (the root file
system is read-only), the JWT key for the api, member-system credential files
for the connectors.  Call with (dict "ctx" $ "credentials" bool "jwt" bool
"configMap" name).
*/}}
{{- define "membersync.volumeMounts" -}}
- name: config
  mountPath: {{ include "membersync.configDir" .ctx }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if and .jwt .ctx.Values.secrets.jwt.existingSecret }}
- name: jwt
  mountPath: {{ include "membersync.jwtDir" .ctx }}
  readOnly: true
{{- end }}
{{- if .credentials }}
{{- range $i, $f := .ctx.Values.secrets.memberSystems.files }}
- name: member-systems-{{ $i }}
  mountPath: {{ $f.mountPath }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "membersync.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if and .jwt .ctx.Values.secrets.jwt.existingSecret }}
- name: jwt
  secret:
    secretName: {{ .ctx.Values.secrets.jwt.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if .credentials }}
{{- range $i, $f := .ctx.Values.secrets.memberSystems.files }}
- name: member-systems-{{ $i }}
  secret:
    secretName: {{ $f.secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}

{{/* Pod scheduling fields shared by every pod. */}}
{{- define "membersync.scheduling" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
