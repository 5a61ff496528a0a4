{{/* The driver image: repository@digest, else repository:tag (tag defaults
to appVersion). With PSO's image block (image.name) image.tag is PSO's
version, not ours: ignored. */}}
{{- define "fb.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ ternary "" .Values.image.tag (hasKey .Values.image "name") | default .Chart.AppVersion }}
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

{{/* The node plugin's namespace: podSecurity.nodeNamespace, else the release's. */}}
{{- define "fb.nodeNamespace" -}}
{{ .Values.podSecurity.nodeNamespace | default .Release.Namespace }}
{{- end -}}

{{/* Metadata lines for an object of the node plugin: its namespace and labels. */}}
{{- define "fb.nodeMeta" -}}
namespace: {{ include "fb.nodeNamespace" . }}
labels:
  {{- include "fb.labels" . | nindent 2 }}
{{- end -}}

{{/* The default array: defaultArray, else the first. */}}
{{- define "fb.defaultArray" -}}
{{- if .Values.defaultArray -}}
{{ .Values.defaultArray }}
{{- else -}}
{{ (first (include "fb.arrays" . | fromYamlArray)).name }}
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
{{- range include "fb.arrays" . | fromYamlArray -}}
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
{{- $a := . -}}
{{- range $k, $v := .labels -}}
{{- if not (regexMatch "^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$" $v) -}}
{{- fail (printf "arrays[%s].labels.%s: %q is not a label value (up to 63 of letters, digits, '-', '_', '.', starting and ending with a letter or digit)" $a.name $k $v) -}}
{{- end -}}
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
{{- $to := .parameters.exportTo | default $.Values.exportTo -}}
{{- if and (eq $to "nodes") (or (hasKey .parameters "exportRules") (hasKey .parameters "exportPolicy")) -}}
{{- fail (printf "storageClasses[%s].parameters: exportTo: nodes decides the export rules; remove exportRules/exportPolicy" .name) -}}
{{- end -}}
{{- if and (ne $to "nodes") (hasKey .parameters "exportOptions") -}}
{{- fail (printf "storageClasses[%s].parameters.exportOptions: only used with exportTo: nodes" .name) -}}
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

{{/* The driver's config.toml, from the values. Keys: docs/settings.md. */}}
{{- define "fb.config" -}}
# flashblade-csi configuration (both the controller and the node read it;
# the node uses only nfs_endpoint and never sees the token).
driver_name = {{ .Values.driverName | quote }}
{{- $arrays := include "fb.arrays" . | fromYamlArray }}
{{- if or .Values.defaultArray (gt (len $arrays) 1) }}
# Where StorageClasses without an `array` parameter put their volumes.
default_array = {{ include "fb.defaultArray" . | quote }}
{{- end }}
{{- range $a := $arrays }}

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
filter = {{ include "fb.logLevel" . | quote }}
{{- end -}}


{{/* The log filter: log.level; PSO's app.debug: true turns the default
"info" into debug for the driver. */}}
{{- define "fb.logLevel" -}}
{{- if and (dig "debug" false (.Values.app | default dict)) (eq .Values.log.level "info") -}}
info,flashblade_csi=debug
{{- else -}}
{{ .Values.log.level }}
{{- end -}}
{{- end -}}

{{/* kubelet's root directory: node.kubeletDir, or PSO's orchestrator.basePath. */}}
{{- define "fb.kubeletDir" -}}
{{- $base := dig "basePath" "" (.Values.orchestrator | default dict) | trimSuffix "/" -}}
{{- if and $base (ne .Values.node.kubeletDir "/var/lib/kubelet") (ne .Values.node.kubeletDir $base) -}}
{{- fail (printf "node.kubeletDir %q and PSO's orchestrator.basePath %q differ: keep one" .Values.node.kubeletDir $base) -}}
{{- end -}}
{{- $base | default .Values.node.kubeletDir -}}
{{- end -}}

{{/* "true" when the values are PSO's (arrays is PSO's map with FlashBlades,
not our list): docs/migrating-from-pso.md. */}}
{{- define "fb.pso" -}}
{{- if kindIs "map" .Values.arrays -}}true{{- end -}}
{{- end -}}

{{/* The arrays in one form for every template, as YAML (use it as
include "fb.arrays" . | fromYamlArray): the arrays list as given, or one
array per entry of PSO's arrays.FlashBlades. A PSO entry becomes: name
pso.arrayNames[i] or fb<i+1>; managementUrl https://<MgmtEndPoint>;
nfsEndpoint NFSEndPoint (or the older NfsEndPoint); its APIToken in the
Secret the chart makes (apiToken); namePrefix namespace.pure (default k8s);
extraNamePrefixes the other namePrefix parameters of storageClasses; labels
Labels as strings; defaultExportRules flashblade.exportRules (PSO 6.x);
caBundle pso.caBundle. Fails on what cannot be carried over. */}}
{{- define "fb.arrays" -}}
{{- if not (include "fb.pso" .) -}}
{{ toYaml .Values.arrays }}
{{- else -}}
{{- $pso := .Values.arrays -}}
{{- $fbs := $pso.FlashBlades | default list -}}
{{- if not $fbs -}}
{{- if $pso.FlashArrays -}}
{{- fail "arrays.FlashBlades: this driver serves FlashBlades only, and these PSO values list FlashArrays only (arrays.FlashArrays is ignored): add the FlashBlades to arrays.FlashBlades" -}}
{{- end -}}
{{- fail "arrays.FlashBlades: these PSO values list no FlashBlade: add at least one (MgmtEndPoint, APIToken, NFSEndPoint)" -}}
{{- end -}}
{{- $psoOpts := .Values.pso | default dict -}}
{{- $names := $psoOpts.arrayNames | default list -}}
{{- if and $names (ne (len $names) (len $fbs)) -}}
{{- fail (printf "pso.arrayNames has %d names for %d entries of arrays.FlashBlades: give one per FlashBlade, in order" (len $names) (len $fbs)) -}}
{{- end -}}
{{- $prefix := dig "pure" "k8s" (.Values.namespace | default dict) | toString -}}
{{- if not (regexMatch "^[A-Za-z0-9][A-Za-z0-9_]{0,19}$" $prefix) -}}
{{- fail (printf "namespace.pure %q cannot be kept as the file-system name prefix: this driver's prefixes are 1-20 letters, digits and '_' (a '-' would let two prefixes name one file system). Set namespace.pure to such a prefix, e.g. %q: new volumes are named with it; the file systems PSO made keep their names" $prefix (regexReplaceAll "[^A-Za-z0-9_]" $prefix "_" | trunc 20)) -}}
{{- end -}}
{{- $rules := dig "exportRules" "" (.Values.flashblade | default dict) -}}
{{- range $c := splitList " " $rules -}}
{{- $client := regexReplaceAll "\\(.*$" $c "" -}}
{{- if or (eq $client "*") (hasSuffix "/0" $client) -}}
{{- fail (printf "flashblade.exportRules %q admits every host (%s; PSO's default): this driver refuses that. Set it to your nodes' network, e.g. \"10.20.0.0/16(rw,no_root_squash)\"" $rules $client) -}}
{{- end -}}
{{- end -}}
{{- /* Class prefixes other than namespace.pure, so ListVolumes reports those volumes too. */ -}}
{{- $extra := list -}}
{{- range .Values.storageClasses -}}
{{- with .parameters.namePrefix -}}
{{- if ne . $prefix -}}{{- $extra = append $extra . | uniq -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $i, $fb := $fbs -}}
{{- $where := printf "arrays.FlashBlades[%d]" $i -}}
{{- if and $fb.NFSEndPoint $fb.NfsEndPoint (ne (toString $fb.NFSEndPoint) (toString $fb.NfsEndPoint)) -}}
{{- fail (printf "%s: NFSEndPoint %q and NfsEndPoint %q differ (two spellings of one key): keep one" $where $fb.NFSEndPoint $fb.NfsEndPoint) -}}
{{- end -}}
{{- $nfs := $fb.NFSEndPoint | default $fb.NfsEndPoint | default "" | toString -}}
{{- if not $nfs -}}
{{- fail (printf "%s: NFSEndPoint (or NfsEndPoint), the data VIP the nodes mount from, is missing" $where) -}}
{{- end -}}
{{- if not $fb.APIToken -}}
{{- fail (printf "%s: APIToken is empty" $where) -}}
{{- end -}}
{{- $name := printf "fb%d" (add1 $i) -}}
{{- if $names -}}{{- $name = index $names $i -}}{{- end -}}
{{- $mgmt := toString $fb.MgmtEndPoint -}}
{{- if and (gt (len (splitList ":" $mgmt)) 2) (not (hasPrefix "[" $mgmt)) -}}
{{- $mgmt = printf "[%s]" $mgmt -}}
{{- end -}}
{{- $a := dict "name" $name "managementUrl" (printf "https://%s" $mgmt) "nfsEndpoint" $nfs "existingSecret" "" "apiToken" (toString $fb.APIToken) "namePrefix" $prefix -}}
{{- with $extra -}}{{- $_ := set $a "extraNamePrefixes" . -}}{{- end -}}
{{- with $psoOpts.caBundle -}}{{- $_ := set $a "caBundle" . -}}{{- end -}}
{{- with $rules -}}{{- $_ := set $a "defaultExportRules" . -}}{{- end -}}
{{- with $fb.Labels -}}
{{- $labels := dict -}}
{{- range $k, $v := . -}}{{- $_ := set $labels $k (toString $v) -}}{{- end -}}
{{- $_ := set $a "labels" $labels -}}
{{- end -}}
{{- $out = append $out $a -}}
{{- end -}}
{{ toYaml $out }}
{{- end -}}
{{- end -}}

{{/* The StorageClasses in one form, as YAML (include "fb.storageClasses" .
| fromYamlArray): storageClasses, with the chart's exportTo: nodes in every
class that does not choose its own, plus what PSO values say about them:
flashblade.snapshotDirectoryEnabled is the snapshotDirectory of every class
that does not set it; storageclass.isPureDefault with pureBackend: file
makes the first class the cluster's default (unless one already is). */}}
{{- define "fb.storageClasses" -}}
{{- $snap := "" -}}
{{- $fbv := .Values.flashblade | default dict -}}
{{- if hasKey $fbv "snapshotDirectoryEnabled" -}}
{{- $snap = $fbv.snapshotDirectoryEnabled | toString | lower -}}
{{- end -}}
{{- $makeDefault := include "fb.psoDefaultClass" . -}}
{{- range .Values.storageClasses -}}
{{- if .isDefault -}}{{- $makeDefault = "" -}}{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $i, $sc := .Values.storageClasses -}}
{{- $c := deepCopy $sc -}}
{{- if and $snap (not (hasKey $c.parameters "snapshotDirectory")) -}}
{{- $_ := set $c.parameters "snapshotDirectory" (eq $snap "true") -}}
{{- end -}}
{{- if and $makeDefault (eq $i 0) -}}
{{- $_ := set $c "isDefault" true -}}
{{- end -}}
{{- if and (eq $.Values.exportTo "nodes") (not (hasKey $c.parameters "exportTo")) -}}
{{- $_ := set $c.parameters "exportTo" "nodes" -}}
{{- end -}}
{{- $out = append $out $c -}}
{{- end -}}
{{ toYaml $out }}
{{- end -}}

{{/* "true" when PSO's storageclass.isPureDefault asks for a default class
this driver can serve: PSO's 'pure' class on the file backend. */}}
{{- define "fb.psoDefaultClass" -}}
{{- $sc := .Values.storageclass | default dict -}}
{{- if and $sc.isPureDefault (eq (toString $sc.pureBackend) "file") -}}true{{- end -}}
{{- end -}}

{{/* The PSO keys in the values that this chart ignores, one per line. */}}
{{- define "fb.psoIgnored" -}}
{{- $v := .Values -}}
{{- if hasKey $v.image "name" }}
image.name
{{- if $v.image.tag }}
image.tag
{{- end }}
{{- end }}
{{- if and (include "fb.pso" .) (hasKey $v.arrays "FlashArrays") }}
arrays.FlashArrays
{{- end }}
{{- range $k := list "csi" "storagetopology" "clusterrolebinding" "flasharray" }}
{{- if hasKey $v $k }}
{{ $k }}
{{- end }}
{{- end }}
{{- with $v.storageclass }}
{{- if hasKey . "createBuiltIn" }}
storageclass.createBuiltIn
{{- end }}
{{- if and .isPureDefault (not (include "fb.psoDefaultClass" $)) }}
storageclass.isPureDefault (pureBackend is not file)
{{- else if and (hasKey . "pureBackend") (not .isPureDefault) }}
storageclass.pureBackend
{{- end }}
{{- end }}
{{- if hasKey ($v.orchestrator | default dict) "name" }}
orchestrator.name
{{- end }}
{{- end -}}

{{/* "true" when some StorageClass exports to nodes: then the CSIDriver has
attachRequired and the csi-attacher runs. Range-exported classes need no
attach, so an install without node-following classes has neither. */}}
{{- define "fb.attach" -}}
{{- $attach := false -}}
{{- range include "fb.storageClasses" . | fromYamlArray -}}
{{- if eq (toString .parameters.exportTo) "nodes" -}}{{- $attach = true -}}{{- end -}}
{{- end -}}
{{- if $attach -}}true{{- end -}}
{{- end -}}

{{/* Stops an upgrade that would change a field Kubernetes keeps immutable,
before anything is applied, with what to do. Takes a dict: kind, name,
have (the live object's fields, empty when there is none), want (this
release's), how (the command that clears the way). */}}
{{- define "fb.immutable" -}}
{{- if .have -}}
{{- range $k, $want := .want -}}
{{- $have := index $.have $k -}}
{{- if ne (toJson $have) (toJson $want) -}}
{{- fail (printf "%s %s: %s is %s in the cluster and %s in this release, and Kubernetes cannot change it in place. Run `%s`, then this upgrade again (deploy/README.md, \"Changing a class or the export mode\")." $.kind $.name $k (toJson $have) (toJson $want) $.how) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
