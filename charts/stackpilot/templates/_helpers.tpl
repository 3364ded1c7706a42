{{/*
Chart name, truncated to the 63 characters Kubernetes names allow.
*/}}
{{- define "stackpilot.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's objects.
*/}}
{{- define "stackpilot.fullname" -}}
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

{{- define "stackpilot.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "stackpilot.labels" -}}
helm.sh/chart: {{ include "stackpilot.chart" . }}
{{ include "stackpilot.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "stackpilot.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stackpilot.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "stackpilot.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "stackpilot.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "stackpilot.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Leader election is on when asked for, and always when more than one replica runs.
Renders "true" or "false".
*/}}
{{- define "stackpilot.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{/*
RBAC rules for the namespaced resources the operator reads and writes. Used by the
ClusterRole (all namespaces) or by the Role in watchNamespace.
*/}}
{{- define "stackpilot.namespacedRules" -}}
# Stack, StackDeployment, Pipeline.
- apiGroups: ["stackpilot.dev"]
  resources: ["pipelines"]
  verbs: ["get", "list", "watch", "patch", "update"]
# StackDeployments own Stacks and Pipelines own StackDeployments and Stacks: creating them
# (server-side apply of a new object is authorized as create) and removing dropped targets.
- apiGroups: ["stackpilot.dev"]
  resources: ["stacks", "stackdeployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["stackpilot.dev"]
  resources: ["stacks/status", "stackdeployments/status", "pipelines/status"]
  verbs: ["patch", "update"]
# Finalizers; also needed to set blockOwnerDeletion on owned objects.
- apiGroups: ["stackpilot.dev"]
  resources: ["stacks/finalizers", "stackdeployments/finalizers", "pipelines/finalizers"]
  verbs: ["update"]
# Parameter values (valueFrom secretKeyRef / configMapKeyRef, template.configMapRef) and
# the Secrets / ConfigMaps the operator writes outputs to (writeOutputsTo).
- apiGroups: [""]
  resources: ["secrets", "configmaps"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Kubernetes Events on condition transitions and failures.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# StackDeployment revision history.
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Pipeline test actions.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# Templates from Flux sources (sourceRef): their status.artifact, read only.
- apiGroups: ["source.toolkit.fluxcd.io"]
  resources: ["gitrepositories", "ocirepositories", "buckets"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
RBAC rules for cluster-scoped resources; always in a ClusterRole.
*/}}
{{- define "stackpilot.clusterScopedRules" -}}
# AwsAccount is cluster-scoped.
- apiGroups: ["stackpilot.dev"]
  resources: ["awsaccounts"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["stackpilot.dev"]
  resources: ["awsaccounts/status"]
  verbs: ["patch", "update"]
- apiGroups: ["stackpilot.dev"]
  resources: ["awsaccounts/finalizers"]
  verbs: ["update"]
# AwsAccount namespaceSelector: a namespace's labels, and relabelling requeues its Stacks.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# Wait at start-up until the operator's own CRDs are Established. Limited to those four
# names: list/watch must then use the field selector metadata.name=<crd>.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames:
    - stacks.stackpilot.dev
    - stackdeployments.stackpilot.dev
    - pipelines.stackpilot.dev
    - awsaccounts.stackpilot.dev
  verbs: ["get", "list", "watch"]
{{- end }}
