{{/* An init container that waits until a user can log in to Elasticsearch (curl reads the
     credentials as a config on stdin: on no command line): (list $ "user" "secret-key"). */}}
{{- define "borg.waitForElasticsearchLogin" -}}
{{- $root := index . 0 -}}
- name: wait-for-{{ index . 1 | replace "_" "-" }}
  image: {{ include "borg.image" (list $root "elasticsearch") }}
  imagePullPolicy: {{ $root.Values.images.pullPolicy }}
  {{- include "borg.containerSecurity" $root | nindent 2 }}
  env:
    - name: ELASTICSEARCH_URL
      value: {{ include "borg.elasticsearchUrl" $root }}
    - name: LOGIN_USER
      value: {{ index . 1 }}
    {{- include "borg.secretEnv" (list $root "LOGIN_PASSWORD" (index . 2)) | nindent 4 }}
  command:
    - /bin/bash
    - -c
    - |
      echo "waiting until $LOGIN_USER can log in to $ELASTICSEARCH_URL (made by the elasticsearch-setup job)"
      until printf 'user = "%s:%s"\n' "$LOGIN_USER" "$LOGIN_PASSWORD" \
          | curl -fsS -o /dev/null -K - "$ELASTICSEARCH_URL/_security/_authenticate"; do
        sleep 5
      done
  resources:
    requests:
      cpu: 10m
      memory: 64Mi
{{- end -}}
