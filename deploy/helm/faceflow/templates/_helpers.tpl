{{/* Names ------------------------------------------------------------------------------------- */}}

{{- define "faceflow.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped base name: the release name, prefixed with the chart name unless it contains it. */}}
{{- define "faceflow.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects. Call with (dict "root" $ "component" "detector"). */}}
{{- define "faceflow.componentName" -}}
{{- printf "%s-%s" (include "faceflow.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------------------------ */}}

{{- define "faceflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faceflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "faceflow.labels" -}}
{{ include "faceflow.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: faceflow
{{- end -}}

{{/* A NetworkPolicy peer: the pods of one component of this release. */}}
{{- define "faceflow.peer" -}}
- podSelector:
    matchLabels:
      {{- include "faceflow.selectorLabels" . | nindent 6 }}
{{- end -}}

{{/* Images and addresses ---------------------------------------------------------------------- */}}

{{/* The faceflow image of a service: its own overrides over the global image; tag defaults to appVersion. */}}
{{- define "faceflow.image" -}}
{{- $img := merge (deepCopy (index .root.Values .component "image" | default dict)) .root.Values.image -}}
{{- printf "%s:%s" $img.repository ($img.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{- define "faceflow.imagePullPolicy" -}}
{{- (index .root.Values .component "image" | default dict).pullPolicy | default .root.Values.image.pullPolicy -}}
{{- end -}}

{{/* host:port of a component's gRPC service inside the cluster. */}}
{{- define "faceflow.addr" -}}
{{- printf "%s.%s.svc:%v" (include "faceflow.componentName" .) .root.Release.Namespace .port -}}
{{- end -}}

{{/* Autoscaling ------------------------------------------------------------------------------- */}}

{{/* "true" when a scaler (HPA or KEDA) owns this component's replica count. */}}
{{- define "faceflow.autoscaled" -}}
{{- $as := (index .root.Values .component).autoscaling | default dict -}}
{{- if and (ne .root.Values.autoscaling.mode "none") $as.enabled -}}true{{- end -}}
{{- end -}}

{{/* PromQL: mean queue time per request (us) for a label selector, over the configured window. */}}
{{- define "faceflow.queueTimeQuery" -}}
{{- $w := .root.Values.autoscaling.rateWindow -}}
sum(rate(nv_inference_queue_duration_us{ {{- .selector -}} }[{{ $w }}])) / clamp_min(sum(rate(nv_inference_request_success{ {{- .selector -}} }[{{ $w }}])), 0.001)
{{- end -}}

{{/* Pod hardening --------------------------------------------------------------------------- */}}

{{- define "faceflow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "faceflow.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Volumes every pod writes to (the root filesystem is read-only), plus the TLS secret. */}}
{{- define "faceflow.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.scratch.tmpSizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ .Values.scratch.dataSizeLimit }}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
    optional: false
{{- end }}
{{- end -}}

{{- define "faceflow.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/faceflow
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/faceflow/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* AWS credentials by reference only: env entries reading an existing Secret. */}}
{{- define "faceflow.awsCredentialsEnv" -}}
{{- with .Values.s3.credentials }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The checkov skip for env-mapped AWS credentials, when they are configured (see docs/deploy.md). */}}
{{- define "faceflow.credentialsSkip" -}}
{{- if .Values.s3.credentials.existingSecret }}
checkov.io/skip1: CKV_K8S_35=AWS SDKs read credentials from AWS_* env vars; the Secret is referenced by name, never inlined; prefer a pod role (serviceAccount annotations)
{{- end }}
{{- end -}}

{{/* Authentication (docs/deploy.md#authentication) ------------------------------------------- */}}

{{/* The Secret holding the service token: the one given, or the chart's own. */}}
{{- define "faceflow.serviceTokenSecret" -}}
{{- .Values.auth.serviceToken.existingSecret | default (include "faceflow.componentName" (dict "root" . "component" "service-token")) -}}
{{- end -}}

{{/* Where the JWKS ConfigMap (auth.jwks) is mounted, in Envoy and the services. */}}
{{- define "faceflow.jwksFile" -}}/etc/faceflow/auth/jwks.json{{- end -}}

{{/* FACEFLOW_AUTH_* and FACEFLOW_SERVICE_TOKEN_FILE of every faceflow service. */}}
{{- define "faceflow.authEnv" -}}
{{- $a := .Values.auth -}}
- name: FACEFLOW_AUTH_ISSUER
  value: {{ $a.issuer | quote }}
- name: FACEFLOW_AUTH_AUDIENCES
  value: {{ join "," $a.audiences | quote }}
{{- if $a.jwksUri }}
- name: FACEFLOW_AUTH_JWKS_URI
  value: {{ $a.jwksUri | quote }}
{{- else }}
- name: FACEFLOW_AUTH_JWKS_FILE
  value: {{ include "faceflow.jwksFile" . | quote }}
{{- end }}
- name: FACEFLOW_AUTH_ROLES_CLAIM
  value: {{ $a.rolesClaim | quote }}
{{- $pairs := list }}
{{- range $value := keys $a.roleMap | sortAlpha }}{{ $pairs = append $pairs (printf "%s=%s" $value (index $a.roleMap $value)) }}{{ end }}
- name: FACEFLOW_AUTH_ROLE_MAP
  value: {{ join "," $pairs | quote }}
- name: FACEFLOW_SERVICE_TOKEN_FILE
  value: /etc/faceflow/service-token/token
{{- end -}}

{{/* Volumes of every faceflow service pod: the service token (read-only, group-readable for fsGroup)
and the JWKS file when it is inline. */}}
{{- define "faceflow.authVolumes" -}}
- name: service-token
  secret:
    secretName: {{ include "faceflow.serviceTokenSecret" . }}
    defaultMode: 0440
    # Kubernetes' default, written out: podman 4.3's `kube play` (the container e2e test) dereferences it.
    optional: false
    items:
      - key: {{ .Values.auth.serviceToken.key }}
        path: token
{{- if .Values.auth.jwks }}
{{ include "faceflow.jwksVolume" . }}
{{- end }}
{{- end -}}

{{- define "faceflow.jwksVolume" -}}
- name: jwks
  configMap:
    name: {{ include "faceflow.componentName" (dict "root" . "component" "jwks") }}
{{- end -}}

{{- define "faceflow.authMounts" -}}
- name: service-token
  mountPath: /etc/faceflow/service-token
  readOnly: true
{{- if .Values.auth.jwks }}
- name: jwks
  mountPath: /etc/faceflow/auth
  readOnly: true
{{- end }}
{{- end -}}

{{/* Models ------------------------------------------------------------------------------------ */}}

{{/* Where the image keeps the model directory (FACEFLOW_CACHE_DIR/models; the Containerfile). */}}
{{- define "faceflow.modelDir" -}}/opt/faceflow/cache/models{{- end -}}

{{/* "true" for the services that load models: detector and embedder. */}}
{{- define "faceflow.loadsModels" -}}
{{- if has .component (list "detector" "embedder") }}true{{ end -}}
{{- end -}}

{{/* The models volume (models.volume), when set, for the services that load models. */}}
{{- define "faceflow.modelVolumes" -}}
{{- if and (include "faceflow.loadsModels" .) .root.Values.models.volume }}
- name: models
  {{- toYaml .root.Values.models.volume | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "faceflow.modelMounts" -}}
{{- if and (include "faceflow.loadsModels" .) .root.Values.models.volume }}
- name: models
  mountPath: {{ include "faceflow.modelDir" .root }}
  readOnly: true
{{- end }}
{{- end -}}
