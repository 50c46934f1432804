{{/* The prefix of every object's name: <release>-borg-dqn (just <release> when it holds the chart's name). */}}
{{- define "borg.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of a component's objects: (list $ "redis") -> <fullname>-redis. */}}
{{- define "borg.name" -}}
{{- printf "%s-%s" (include "borg.fullname" (index . 0)) (index . 1) -}}
{{- end -}}

{{/* Labels that select a component's pods: (list $ "redis"). */}}
{{- define "borg.selectorLabels" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Every object's labels: (list $ "redis"). */}}
{{- define "borg.labels" -}}
{{ include "borg.selectorLabels" . }}
app.kubernetes.io/part-of: borg-dqn
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{/* An image reference: (list $ "redis") -> [registry/]repository:tag of images.redis. */}}
{{- define "borg.image" -}}
{{- $root := index . 0 -}}
{{- $image := index $root.Values.images (index . 1) -}}
{{- $registry := $root.Values.images.registry -}}
{{- printf "%s%s:%s" (ternary (printf "%s/" $registry) "" (ne $registry "")) $image.repository (toString $image.tag) -}}
{{- end -}}

{{/* The Secret holding the stack's passwords. */}}
{{- define "borg.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "borg.name" (list . "secrets")) -}}
{{- end -}}

{{/* An environment variable from a key of the stack's Secret: (list $ "NAME" "key"). */}}
{{- define "borg.secretEnv" -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "borg.secretName" (index . 0) }}
      key: {{ index . 2 }}
{{- end -}}

{{/* Pod-level settings every pod shares: image pull secrets, no API token (no pod talks to the API server). */}}
{{- define "borg.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.images.pullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A container's security context: no privilege escalation, no capabilities. */}}
{{- define "borg.containerSecurity" -}}
securityContext:
  allowPrivilegeEscalation: false
  capabilities:
    drop: [ALL]
{{- end -}}

{{/* A readiness probe equal to a compose healthcheck: (dict "command" "..." "interval" 5 "timeout" 3 "retries" 10 "startPeriod" 10).
     compose counts no failure during start_period; the probe starts after it. */}}
{{- define "borg.healthcheckProbe" -}}
exec:
  command: ["/bin/sh", "-c", {{ .command | quote }}]
initialDelaySeconds: {{ .startPeriod }}
periodSeconds: {{ .interval }}
timeoutSeconds: {{ .timeout }}
failureThreshold: {{ .retries }}
{{- end -}}

{{/* A PersistentVolumeClaim spec from a persistence value: size, storageClassName, accessModes. */}}
{{- define "borg.claimSpec" -}}
accessModes: {{ .accessModes | default (list "ReadWriteOnce") | toJson }}
{{- with .storageClassName }}
storageClassName: {{ . }}
{{- end }}
resources:
  requests:
    storage: {{ .size }}
{{- end -}}

{{/* The in-stack addresses. */}}
{{- define "borg.redisHost" -}}{{ include "borg.name" (list . "redis") }}{{- end -}}
{{- define "borg.redisReadHost" -}}{{ include "borg.name" (list . "redis-read") }}{{- end -}}
{{- define "borg.kafkaBootstrap" -}}{{ include "borg.name" (list . "kafka") }}:9092{{- end -}}
{{- define "borg.elasticsearchUrl" -}}http://{{ include "borg.name" (list . "elasticsearch") }}:9200{{- end -}}
{{- define "borg.kibanaUrl" -}}http://{{ include "borg.name" (list . "kibana") }}:5601{{- end -}}
