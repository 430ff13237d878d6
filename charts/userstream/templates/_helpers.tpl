{{/* Names and labels of every userstream object. */}}

{{- define "userstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object: the release name, unless it lacks the chart name (then <release>-<chart>). */}}
{{- define "userstream.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "userstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/part-of: userstream
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component: <context> is (dict "root" $ "component" "stream"). */}}
{{- define "userstream.componentLabels" -}}
{{ include "userstream.labels" .root }}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "userstream.selectorLabels" -}}
app.kubernetes.io/part-of: userstream
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* --- Object names shared with the DAGs and docs/charts.md --- */}}
{{- define "userstream.settingsName" -}}{{ include "userstream.fullname" . }}-settings{{- end -}}
{{- define "userstream.ingestName" -}}{{ include "userstream.fullname" . }}-ingest{{- end -}}
{{- define "userstream.streamName" -}}{{ include "userstream.fullname" . }}-stream{{- end -}}
{{- define "userstream.sparkName" -}}{{ include "userstream.fullname" . }}-spark{{- end -}}
{{- define "userstream.kafkaName" -}}{{ include "userstream.fullname" . }}-kafka{{- end -}}
{{- define "userstream.cassandraName" -}}{{ include "userstream.fullname" . }}-cassandra{{- end -}}
{{- define "userstream.postgresName" -}}{{ include "userstream.fullname" . }}-staging{{- end -}}

{{/* --- Where each server is and whose Secrets hold its credentials: the operators' (kafka.enabled,
     cassandra.enabled, postgres.enabled) or, in external mode, those named in <server>.external. --- */}}

{{/* The Secret of the Kafka CA: Strimzi's cluster CA, or kafka.external.caSecret.name (may be empty). */}}
{{- define "userstream.kafkaCaSecret" -}}
{{- if .Values.kafka.enabled -}}
{{ include "userstream.kafkaName" . }}-cluster-ca-cert
{{- else -}}
{{ .Values.kafka.external.caSecret.name }}
{{- end -}}
{{- end -}}
{{- define "userstream.kafkaCaKey" -}}
{{- if .Values.kafka.enabled -}}ca.crt{{- else -}}{{ .Values.kafka.external.caSecret.key }}{{- end -}}
{{- end -}}

{{/* "true" when the clients speak TLS to Kafka (empty otherwise). */}}
{{- define "userstream.kafkaTls" -}}
{{- if .Values.kafka.enabled -}}
{{- if .Values.kafka.listener.tls -}}true{{- end -}}
{{- else if eq .Values.kafka.external.securityProtocol "SASL_SSL" -}}true{{- end -}}
{{- end -}}

{{/* "true" when a CA bundle is mounted into the Kafka clients (empty otherwise). */}}
{{- define "userstream.kafkaCaMounted" -}}
{{- if and (include "userstream.kafkaTls" .) (include "userstream.kafkaCaSecret" .) -}}true{{- end -}}
{{- end -}}

{{- define "userstream.kafkaSecurityProtocol" -}}
{{- if .Values.kafka.enabled -}}
{{ ternary "SASL_SSL" "SASL_PLAINTEXT" .Values.kafka.listener.tls }}
{{- else -}}
{{ .Values.kafka.external.securityProtocol }}
{{- end -}}
{{- end -}}

{{- define "userstream.kafkaSaslMechanism" -}}
{{- if .Values.kafka.enabled -}}SCRAM-SHA-512{{- else -}}{{ .Values.kafka.external.saslMechanism }}{{- end -}}
{{- end -}}

{{/* The Secret with the Kafka credentials of one client, as JSON {name, usernameKey, passwordKey};
     usernameKey is empty for a Strimzi KafkaUser (the user name is the KafkaUser's and its Secret's
     name). Context: (dict "root" $ "client" "ingest"|"stream"). */}}
{{- define "userstream.kafkaLogin" -}}
{{- $k := .root.Values.kafka -}}
{{- if $k.enabled -}}
{{- dict "name" (printf "%s-%s" (include "userstream.fullname" .root) .client) "usernameKey" "" "passwordKey" "password" | toJson -}}
{{- else -}}
{{- $u := index $k.external.users .client -}}
{{- dict "name" $u.secretName "usernameKey" $u.usernameKey "passwordKey" $u.passwordKey | toJson -}}
{{- end -}}
{{- end -}}

{{/* The Secret of one Cassandra login, as JSON {name, usernameKey, passwordKey}: "admin" (the
     K8ssandra superuser or cassandra.external.adminSecret; the migration only), "writer" (the
     stream) or "reader" (the health check). Context: (dict "root" $ "login" NAME). */}}
{{- define "userstream.cassandraLogin" -}}
{{- $c := .root.Values.cassandra -}}
{{- if $c.enabled -}}
{{- $suffix := ternary "superuser" .login (eq .login "admin") -}}
{{- dict "name" (printf "%s-%s" (include "userstream.cassandraName" .root) $suffix) "usernameKey" "username" "passwordKey" "password" | toJson -}}
{{- else -}}
{{- $s := index $c.external (printf "%sSecret" .login) -}}
{{- dict "name" $s.name "usernameKey" $s.usernameKey "passwordKey" $s.passwordKey | toJson -}}
{{- end -}}
{{- end -}}
{{- define "userstream.cassandraSecret" -}}{{ (include "userstream.cassandraLogin" (dict "root" . "login" "admin") | fromJson).name }}{{- end -}}
{{- define "userstream.cassandraWriterSecret" -}}{{ (include "userstream.cassandraLogin" (dict "root" . "login" "writer") | fromJson).name }}{{- end -}}
{{- define "userstream.cassandraReaderSecret" -}}{{ (include "userstream.cassandraLogin" (dict "root" . "login" "reader") | fromJson).name }}{{- end -}}

{{- define "userstream.cassandraPort" -}}
{{- if .Values.cassandra.enabled -}}9042{{- else -}}{{ .Values.cassandra.external.port }}{{- end -}}
{{- end -}}
{{- define "userstream.cassandraLocalDc" -}}
{{- if .Values.cassandra.enabled -}}{{ .Values.cassandra.datacenter }}{{- else -}}{{ .Values.cassandra.external.localDatacenter }}{{- end -}}
{{- end -}}

{{/* The Secret with the staging database's libpq URI: CloudNativePG's <cluster>-app, or
     postgres.external.dsnSecret. */}}
{{- define "userstream.postgresSecret" -}}
{{- if .Values.postgres.enabled -}}
{{ include "userstream.postgresName" . }}-app
{{- else -}}
{{ .Values.postgres.external.dsnSecret.name }}
{{- end -}}
{{- end -}}
{{- define "userstream.postgresDsnKey" -}}
{{- if .Values.postgres.enabled -}}uri{{- else -}}{{ .Values.postgres.external.dsnSecret.key }}{{- end -}}
{{- end -}}
{{- define "userstream.checkpointClaim" -}}{{ include "userstream.streamName" . }}-checkpoints{{- end -}}

{{- define "userstream.kafkaPort" -}}{{ if .Values.kafka.listener.tls }}9093{{ else }}9092{{ end }}{{- end -}}

{{- define "userstream.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{ include "userstream.kafkaName" . }}-kafka-bootstrap.{{ .Release.Namespace }}.svc:{{ include "userstream.kafkaPort" . }}
{{- else -}}
{{ .Values.kafka.external.bootstrapServers }}
{{- end -}}
{{- end -}}

{{/* cass-operator's service of the datacenter: <cluster>-<dc>-service */}}
{{- define "userstream.cassandraContactPoints" -}}
{{- if .Values.cassandra.enabled -}}
{{ include "userstream.cassandraName" . }}-{{ .Values.cassandra.datacenter }}-service.{{ .Release.Namespace }}.svc
{{- else -}}
{{ .Values.cassandra.external.contactPoints }}
{{- end -}}
{{- end -}}

{{- define "userstream.kafkaCaDir" -}}/etc/userstream/kafka-ca{{- end -}}

{{- define "userstream.image" -}}
{{ .repository }}:{{ .tag }}
{{- end -}}

{{/* Container securityContext of every container this chart defines. */}}
{{- define "userstream.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Secret-backed Cassandra credentials of one login (userstream.cassandraLogin).
     Context: (dict "root" $ "login" NAME "prefix" "USERSTREAM_CASSANDRA_"); prefix defaults to it. */}}
{{- define "userstream.cassandraCredentialsEnv" -}}
{{- $prefix := default "USERSTREAM_CASSANDRA_" .prefix -}}
{{- $s := include "userstream.cassandraLogin" . | fromJson -}}
- name: {{ $prefix }}USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.usernameKey }}
- name: {{ $prefix }}PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.passwordKey }}
{{- end -}}

{{/* The roles the migration creates: name and password of each from its Secret. */}}
{{- define "userstream.cassandraRolesEnv" -}}
{{- range $role := list "writer" "reader" }}
{{- $s := include "userstream.cassandraLogin" (dict "root" $ "login" $role) | fromJson }}
- name: USERSTREAM_CASSANDRA_{{ upper $role }}_ROLE
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.usernameKey }}
- name: USERSTREAM_CASSANDRA_{{ upper $role }}_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.passwordKey }}
{{- end }}
{{- end -}}

{{/* Kafka credentials of one client (userstream.kafkaLogin): a Strimzi KafkaUser's name is its user
     name, an external user's comes from its Secret. Context: (dict "root" $ "client" NAME) */}}
{{- define "userstream.kafkaCredentialsEnv" -}}
{{- $s := include "userstream.kafkaLogin" . | fromJson -}}
- name: USERSTREAM_KAFKA_USERNAME
{{- if $s.usernameKey }}
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.usernameKey }}
{{- else }}
  value: {{ $s.name }}
{{- end }}
- name: USERSTREAM_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.name }}
      key: {{ $s.passwordKey }}
{{- end -}}

{{/* Pods that are userstream's clients (ingest, stream, migrate, health checks), not the servers the
     operators run (their pods carry the operators' cluster labels). */}}
{{- define "userstream.clientSelector" -}}
matchLabels:
  app.kubernetes.io/part-of: userstream
matchExpressions:
  - {key: strimzi.io/cluster, operator: DoesNotExist}
  - {key: cassandra.datastax.com/cluster, operator: DoesNotExist}
  - {key: cnpg.io/cluster, operator: DoesNotExist}
{{- end -}}

{{/* Pod settings shared by the Spark driver and executors. Context: (dict "root" $ "labels" LABELS) */}}
{{- define "userstream.sparkPodCommon" -}}
{{- $root := .root -}}
labels:
  {{- toYaml .labels | nindent 2 }}
podSecurityContext:
  runAsNonRoot: true
  runAsUser: {{ $root.Values.streaming.runAsUser }}
  runAsGroup: {{ $root.Values.streaming.runAsUser }}
  fsGroup: {{ $root.Values.streaming.runAsUser }}
  seccompProfile:
    type: RuntimeDefault
securityContext:
  runAsNonRoot: true
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: {{ $root.Values.streaming.readOnlyRootFilesystem }}
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
envFrom:
  - configMapRef:
      name: {{ include "userstream.settingsName" $root }}
env:
  {{- include "userstream.kafkaCredentialsEnv" (dict "root" $root "client" "stream") | nindent 2 }}
  {{- include "userstream.cassandraCredentialsEnv" (dict "root" $root "login" "writer") | nindent 2 }}
{{- end }}
{{- define "userstream.sparkMetricsDir" -}}/etc/userstream/spark-metrics{{- end -}}
{{- define "userstream.sparkMounts" -}}
- name: tmp
  mountPath: /tmp
- name: work-dir
  mountPath: /opt/spark/work-dir
{{- if .Values.streaming.metrics.enabled }}
- name: spark-metrics
  mountPath: {{ include "userstream.sparkMetricsDir" . }}
  readOnly: true
{{- end }}
{{- if include "userstream.kafkaCaMounted" . }}
- name: kafka-ca
  mountPath: {{ include "userstream.kafkaCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}
