{{/* The in-stack addresses the game agents get (compose.yaml's `environment:` of game),
     over the settings ConfigMap: the Redis password from the Secret, expanded into the URLs. */}}
{{- define "borg.agentEnvironment" -}}
{{- include "borg.secretEnv" (list . "REDIS_PASSWORD" "redis-password") }}
- name: CONFIG_redis_url
  value: redis://:$(REDIS_PASSWORD)@{{ include "borg.redisHost" . }}:6379/0
{{- if and (gt (int .Values.redis.replicas.count) 0) .Values.redis.replicas.agentsRead }}
# Mirror pulls go to the read replicas; pushes stay on the primary.
- name: CONFIG_redis_read_url
  value: redis://:$(REDIS_PASSWORD)@{{ include "borg.redisReadHost" . }}:6379/0
{{- end }}
- name: CONFIG_kafka_bootstrap_servers
  value: {{ include "borg.kafkaBootstrap" . }}
- name: CONFIG_model_store
  value: /data/models
- name: CONFIG_tensorboard_dir
  value: /data/tensorboard
{{- end -}}
