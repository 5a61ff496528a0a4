{{/* The driver image: repository@digest, else repository:tag (tag defaults to appVersion). */}}
{{- define "fb.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "fb.labels" -}}
app.kubernetes.io/part-of: flashblade-csi
{{- if not .Values.kustomizeBase }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}
{{- end -}}

{{/* Metadata lines for a namespaced object: namespace and labels. */}}
{{- define "fb.meta" -}}
namespace: {{ .Release.Namespace }}
labels:
  {{- include "fb.labels" . | nindent 2 }}
{{- end -}}

{{/* The default array: defaultArray, else the first. */}}
{{- define "fb.defaultArray" -}}
{{- if .Values.defaultArray -}}
{{ .Values.defaultArray }}
{{- else -}}
{{ (first .Values.arrays).name }}
{{- end -}}
{{- end -}}

{{/* Where the controller finds an array's credentials. */}}
{{- define "fb.credDir" -}}
/etc/flashblade-csi/credentials/{{ .name }}
{{- end -}}

{{/* Key of the token in the array's Secret (existingSecretKeys.apiToken, default api-token). */}}
{{- define "fb.tokenKey" -}}
{{- if .existingSecret -}}
{{ dig "existingSecretKeys" "apiToken" "" . | default "api-token" }}
{{- else -}}
api-token
{{- end -}}
{{- end -}}

{{/* Key of the CA in the array's Secret; "" when there is none (existingSecretKeys.caBundle has no default). */}}
{{- define "fb.caKey" -}}
{{- if .existingSecret -}}
{{ dig "existingSecretKeys" "caBundle" "" . }}
{{- else if .caBundle -}}
ca.pem
{{- end -}}
{{- end -}}

{{/* The Secret holding an array's token: the admin's, or the one the chart makes. */}}
{{- define "fb.secretName" -}}
{{- if .existingSecret -}}
{{ .existingSecret }}
{{- else -}}
flashblade-csi-array-{{ .name | lower | replace "_" "-" | replace "." "-" }}
{{- end -}}
{{- end -}}

{{/* Checks across values that the schema cannot express; fails with a message. */}}
{{- define "fb.checks" -}}
{{- $names := list -}}
{{- range .Values.arrays -}}
{{- if has .name $names -}}
{{- fail (printf "arrays: the name %q is used twice" .name) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- if and .existingSecret .apiToken -}}
{{- fail (printf "arrays[%s]: set existingSecret or apiToken, not both" .name) -}}
{{- end -}}
{{- if not (or .existingSecret .apiToken) -}}
{{- fail (printf "arrays[%s]: the API token is missing: set existingSecret (recommended) or apiToken" .name) -}}
{{- end -}}
{{- if and .existingSecret .caBundle -}}
{{- fail (printf "arrays[%s]: caBundle goes with apiToken; with existingSecret put the CA in that Secret (existingSecretKeys.caBundle)" .name) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.defaultArray (not (has .Values.defaultArray $names)) -}}
{{- fail (printf "defaultArray: %q is not one of arrays[].name" .Values.defaultArray) -}}
{{- end -}}
{{- range .Values.storageClasses -}}
{{- if and .parameters.array (ne .parameters.array "auto") (not (has .parameters.array $names)) -}}
{{- fail (printf "storageClasses[%s].parameters.array: %q is not one of arrays[].name" .name .parameters.array) -}}
{{- end -}}
{{- if and (hasKey .parameters "exportRules") (hasKey .parameters "exportPolicy") -}}
{{- fail (printf "storageClasses[%s].parameters: exportRules and exportPolicy are exclusive" .name) -}}
{{- end -}}
{{- if and (eq $.Values.exportTo "nodes") (or (hasKey .parameters "exportRules") (hasKey .parameters "exportPolicy")) -}}
{{- fail (printf "storageClasses[%s].parameters: exportTo: nodes decides the export rules; remove exportRules/exportPolicy" .name) -}}
{{- end -}}
{{- end -}}
{{- range .Values.datasets -}}
{{- if and .array (not (has .array $names)) -}}
{{- fail (printf "datasets[%s].array: %q is not one of arrays[].name" .name .array) -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int .Values.controller.replicas) 1) (not .Values.controller.leaderElection.enabled) -}}
{{- fail "controller.replicas > 1 needs controller.leaderElection.enabled: two active controllers would provision twice" -}}
{{- end -}}
{{- if eq (int .Values.controller.healthPort) (int .Values.node.healthPort) -}}
{{- fail "controller.healthPort and node.healthPort must differ (the node plugin shares the host network)" -}}
{{- end -}}
{{- end -}}

{{/* Leader-election flags of a controller sidecar. */}}
{{- define "fb.leaderElection" -}}
{{- if .Values.controller.leaderElection.enabled }}
- --leader-election
- --leader-election-namespace=$(NAMESPACE)
{{- with .Values.controller.leaderElection }}
- --leader-election-lease-duration={{ .leaseDuration | default "15s" }}
- --leader-election-renew-deadline={{ .renewDeadline | default "10s" }}
- --leader-election-retry-period={{ .retryPeriod | default "5s" }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The security context every non-root sidecar gets. */}}
{{- define "fb.restricted" -}}
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The driver's config.toml, from the values. Keys: README.md "Configuration". */}}
{{- define "fb.config" -}}
# flashblade-csi configuration (both the controller and the node read it;
# the node uses only nfs_endpoint and never sees the token).
driver_name = {{ .Values.driverName | quote }}
{{- if or .Values.defaultArray (gt (len .Values.arrays) 1) }}
# Where StorageClasses without an `array` parameter put their volumes.
default_array = {{ include "fb.defaultArray" . | quote }}
{{- end }}
{{- range $a := .Values.arrays }}

[[array]]
name = {{ .name | quote }}
management_url = {{ .managementUrl | quote }}
api_token_file = "{{ include "fb.credDir" . }}/{{ include "fb.tokenKey" . }}"
{{- with include "fb.caKey" . }}
ca_file = "{{ include "fb.credDir" $a }}/{{ . }}"
{{- end }}
{{- if .insecureSkipTlsVerify }}
insecure_skip_tls_verify = true
{{- end }}
nfs_endpoint = {{ .nfsEndpoint | quote }}
name_prefix = {{ .namePrefix | default "k8s" | quote }}
{{- with .extraNamePrefixes }}
extra_name_prefixes = [{{ range $i, $p := . }}{{ if $i }}, {{ end }}{{ $p | quote }}{{ end }}]
{{- end }}
{{- with .defaultExportRules }}
# For StorageClasses that name neither exportRules nor exportPolicy.
default_export_rules = {{ . | quote }}
{{- end }}
{{- if .allowWildcardExport }}
allow_wildcard_export = true
{{- end }}
{{- with .labels }}
# Placement labels (StorageClasses with array: auto select by them).
labels = { {{ range $i, $k := keys . | sortAlpha }}{{ if $i }}, {{ end }}{{ $k | quote }} = {{ index $a.labels $k | quote }}{{ end }} }
{{- end }}
{{- end }}

[timeouts]
{{- with .Values.timeouts }}
# Below csi-provisioner's --timeout.
array_request = {{ .arrayRequest | default "30s" | quote }}
mount = {{ .mount | default "60s" | quote }}
unmount = {{ .unmount | default "30s" | quote }}
stats = {{ .stats | default "10s" | quote }}
shutdown_grace = {{ .shutdownGrace | default "20s" | quote }}
{{- end }}

[limits]
max_array_requests = {{ .Values.limits.maxArrayRequests | default 32 }}

[log]
format = {{ .Values.log.format | quote }}
filter = {{ .Values.log.level | quote }}
{{- end -}}
