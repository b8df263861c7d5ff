{{/* The release's base name, at most 63 characters. */}}
{{- define "boxsync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "boxsync.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "boxsync.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "boxsync.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The ConfigMap's data: BOXSYNC_* settings, never a secret. */}}
{{- define "boxsync.settings" -}}
{{- range $name, $value := .Values.settings }}
{{- $upper := upper $name }}
{{- if or (regexMatch "(PASSWORD|SECRET|TOKEN|_PAT)$" $upper) (contains "DATABASE_URL" $upper) }}
{{- fail (printf "settings.%s is a secret: put BOXSYNC_%s in secrets.existingSecret, not in values" $name $upper) }}
{{- end }}
BOXSYNC_{{ $upper }}: {{ $value | toString | quote }}
{{- end }}
BOXSYNC_WEB_BIND: "0.0.0.0"
BOXSYNC_WEB_PORT: {{ .Values.web.port | toString | quote }}
BOXSYNC_KAFKA_SECURITY_PROTOCOL: {{ .Values.kafka.securityProtocol | quote }}
{{- with .Values.kafka.saslMechanism }}
BOXSYNC_KAFKA_SASL_MECHANISM: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.saslUsername }}
BOXSYNC_KAFKA_SASL_USERNAME: {{ . | quote }}
{{- end }}
{{- if .Values.kafka.caSecret.name }}
BOXSYNC_KAFKA_SSL_CA_FILE: /etc/boxsync/kafka-ca/{{ .Values.kafka.caSecret.key }}
{{- end }}
{{- with .Values.database.sslmode }}
BOXSYNC_DATABASE_SSLMODE: {{ . | quote }}
{{- end }}
{{- if .Values.database.caSecret.name }}
PGSSLROOTCERT: /etc/boxsync/postgres-ca/{{ .Values.database.caSecret.key }}
{{- end }}
{{- end -}}

{{/* Environment of every boxsync container: the ConfigMap, then the secrets by reference. */}}
{{- define "boxsync.env" -}}
envFrom:
  - configMapRef:
      name: {{ .configMap }}
  {{- with .root.Values.secrets.existingSecret }}
  - secretRef:
      name: {{ . }}
      optional: true
  {{- end }}
env:
  - name: BOXSYNC_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ required "database.urlSecret.name: the Secret with the PostgreSQL URL" .root.Values.database.urlSecret.name }}
        key: {{ .root.Values.database.urlSecret.key }}
  {{- if .root.Values.kafka.passwordSecret.name }}
  - name: BOXSYNC_KAFKA_SASL_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ .root.Values.kafka.passwordSecret.name }}
        key: {{ .root.Values.kafka.passwordSecret.key }}
  {{- end }}
{{- end -}}

{{- define "boxsync.caVolumes" -}}
{{- if .Values.kafka.caSecret.name }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.caSecret.name }}
    items: [{key: {{ .Values.kafka.caSecret.key }}, path: {{ .Values.kafka.caSecret.key }}}]
{{- end }}
{{- if .Values.database.caSecret.name }}
- name: postgres-ca
  secret:
    secretName: {{ .Values.database.caSecret.name }}
    items: [{key: {{ .Values.database.caSecret.key }}, path: {{ .Values.database.caSecret.key }}}]
{{- end }}
{{- end -}}

{{- define "boxsync.caMounts" -}}
{{- if .Values.kafka.caSecret.name }}
- {name: kafka-ca, mountPath: /etc/boxsync/kafka-ca, readOnly: true}
{{- end }}
{{- if .Values.database.caSecret.name }}
- {name: postgres-ca, mountPath: /etc/boxsync/postgres-ca, readOnly: true}
{{- end }}
{{- end -}}
