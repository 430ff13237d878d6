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
{{- define "userstream.kafkaCaSecret" -}}{{ include "userstream.kafkaName" . }}-cluster-ca-cert{{- end -}}
{{- define "userstream.cassandraName" -}}{{ include "userstream.fullname" . }}-cassandra{{- end -}}
{{- define "userstream.cassandraSecret" -}}{{ include "userstream.cassandraName" . }}-superuser{{- end -}}
{{- define "userstream.cassandraWriterSecret" -}}{{ include "userstream.cassandraName" . }}-writer{{- end -}}
{{- define "userstream.cassandraReaderSecret" -}}{{ include "userstream.cassandraName" . }}-reader{{- end -}}
{{- define "userstream.postgresName" -}}{{ include "userstream.fullname" . }}-staging{{- end -}}
{{- define "userstream.postgresSecret" -}}{{ include "userstream.postgresName" . }}-app{{- end -}}
{{- define "userstream.checkpointClaim" -}}{{ include "userstream.streamName" . }}-checkpoints{{- end -}}

{{- define "userstream.kafkaPort" -}}{{ if .Values.kafka.listener.tls }}9093{{ else }}9092{{ end }}{{- end -}}

{{- define "userstream.kafkaBootstrap" -}}
{{- if .Values.kafka.enabled -}}
{{ include "userstream.kafkaName" . }}-kafka-bootstrap.{{ .Release.Namespace }}.svc:{{ include "userstream.kafkaPort" . }}
{{- else -}}
{{ .Values.kafka.externalBootstrapServers }}
{{- end -}}
{{- end -}}

{{/* cass-operator's service of the datacenter: <cluster>-<dc>-service */}}
{{- define "userstream.cassandraContactPoints" -}}
{{- if .Values.cassandra.enabled -}}
{{ include "userstream.cassandraName" . }}-{{ .Values.cassandra.datacenter }}-service.{{ .Release.Namespace }}.svc
{{- else -}}
{{ .Values.cassandra.externalContactPoints }}
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

{{/* Secret-backed Cassandra credentials of one Secret (keys username, password).
     Context: (dict "secret" NAME "prefix" "USERSTREAM_CASSANDRA_"); prefix defaults to it. */}}
{{- define "userstream.cassandraCredentialsEnv" -}}
{{- $prefix := default "USERSTREAM_CASSANDRA_" .prefix -}}
- name: {{ $prefix }}USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: username
- name: {{ $prefix }}PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: password
{{- end -}}

{{/* The roles the migration creates: name and password of each from its Secret. */}}
{{- define "userstream.cassandraRolesEnv" -}}
{{- range $role := list "writer" "reader" }}
{{- $secret := printf "%s-%s" (include "userstream.cassandraName" $) $role }}
- name: USERSTREAM_CASSANDRA_{{ upper $role }}_ROLE
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: username
- name: USERSTREAM_CASSANDRA_{{ upper $role }}_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: password
{{- end }}
{{- end -}}

{{/* Kafka credentials of one KafkaUser (its Secret has the user's name). Context: (dict "root" $ "user" NAME) */}}
{{- define "userstream.kafkaCredentialsEnv" -}}
- name: USERSTREAM_KAFKA_USERNAME
  value: {{ .user }}
- name: USERSTREAM_KAFKA_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .user }}
      key: password
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
  {{- include "userstream.kafkaCredentialsEnv" (dict "root" $root "user" (include "userstream.streamName" $root)) | nindent 2 }}
  {{- include "userstream.cassandraCredentialsEnv" (dict "secret" (include "userstream.cassandraWriterSecret" $root)) | nindent 2 }}
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
{{- if .Values.kafka.listener.tls }}
- name: kafka-ca
  mountPath: {{ include "userstream.kafkaCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}
