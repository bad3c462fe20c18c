{{/* Chart name. */}}
{{- define "interlink-vk.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "interlink-vk.fullname" -}}
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

{{/* The virtual node's name. */}}
{{- define "interlink-vk.nodeName" -}}
{{- default .Release.Name .Values.node.name }}
{{- end }}

{{- define "interlink-vk.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "interlink-vk.labels" -}}
helm.sh/chart: {{ include "interlink-vk.chart" . }}
{{ include "interlink-vk.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: virtual-kubelet
interlink.eu/node: {{ include "interlink-vk.nodeName" . }}
{{- end }}

{{/* Selector labels. */}}
{{- define "interlink-vk.selectorLabels" -}}
app.kubernetes.io/name: {{ include "interlink-vk.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "interlink-vk.serviceAccountName" -}}
{{- default (include "interlink-vk.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The Secret with the edge credentials (the user's or the chart's). */}}
{{- define "interlink-vk.edgeSecretName" -}}
{{- default (printf "%s-edge" (include "interlink-vk.fullname" .)) .Values.edge.existingSecret }}
{{- end }}

{{- define "interlink-vk.edgeHasCA" -}}
{{- if or .Values.edge.secretHasCA (and (not .Values.edge.existingSecret) .Values.edge.credentials.caCrt) }}true{{ end }}
{{- end }}

{{/* Where the pod's files are mounted (paths the VK is given on its command line). */}}
{{- define "interlink-vk.paths" -}}
config: /etc/interlink/config
edge: /etc/interlink/edge
kubelet: /etc/interlink/kubelet
state: /var/lib/interlink/vk
serviceAccount: /var/run/secrets/kubernetes.io/serviceaccount
{{- end }}

{{/* Refuse credentials that do not fit the chosen auth, naming the value to set. */}}
{{- define "interlink-vk.checkEdge" -}}
{{- $e := .Values.edge }}
{{- if not $e.existingSecret }}
{{- if and (eq $e.auth "token") (not $e.credentials.token) }}
{{- fail "edge.credentials.token is required with edge.auth=token (or give edge.existingSecret)" }}
{{- end }}
{{- if and (eq $e.auth "oidc") (not $e.credentials.clientSecret) }}
{{- fail "edge.credentials.clientSecret is required with edge.auth=oidc (or give edge.existingSecret)" }}
{{- end }}
{{- if and (eq $e.auth "mtls") (not (and $e.credentials.tlsCrt $e.credentials.tlsKey)) }}
{{- fail "edge.credentials.tlsCrt and edge.credentials.tlsKey are required with edge.auth=mtls (or give edge.existingSecret)" }}
{{- end }}
{{- end }}
{{- if and (eq $e.auth "oidc") (not (and $e.oidc.issuer $e.oidc.clientId)) }}
{{- fail "edge.oidc.issuer and edge.oidc.clientId are required with edge.auth=oidc" }}
{{- end }}
{{- end }}

{{/* The VK's command-line arguments: the configuration file and the paths of this pod. */}}
{{- define "interlink-vk.args" -}}
{{- $p := include "interlink-vk.paths" . | fromYaml }}
- vk
- --config={{ $p.config }}/vk.yaml
- --internal-ip=$(POD_IP)
- --set=service_account_dir={{ $p.serviceAccount }}
- --set=state_dir={{ $p.state }}
{{- include "interlink-vk.edgeArgs" . }}
{{- if .Values.kubeletCert.existingSecret }}
- --set=kubelet_cert={{ $p.kubelet }}/tls.crt
- --set=kubelet_key={{ $p.kubelet }}/tls.key
{{- end }}
- --log-level={{ .Values.logLevel }}
{{- end }}

{{/* Where the edge credentials are (also given to the uninstall hook, whose configuration
must be complete although it does not call the edge). */}}
{{- define "interlink-vk.edgeArgs" -}}
{{- $p := include "interlink-vk.paths" . | fromYaml }}
{{- $e := .Values.edge }}
{{- if eq $e.auth "token" }}
- --set=edge.token_file={{ $p.edge }}/token
{{- else if eq $e.auth "oidc" }}
- --set=edge.oidc.client_secret_file={{ $p.edge }}/client-secret
{{- else if eq $e.auth "mtls" }}
- --set=edge.client_cert={{ $p.edge }}/tls.crt
- --set=edge.client_key={{ $p.edge }}/tls.key
{{- end }}
{{- if include "interlink-vk.edgeHasCA" . }}
- --set=edge.ca_file={{ $p.edge }}/ca.crt
{{- if eq $e.auth "oidc" }}
- --set=edge.oidc.ca_file={{ $p.edge }}/ca.crt
{{- end }}
{{- end }}
{{- end }}

{{/* The VK configuration file (docs/vk.md), from the values; paths come as arguments. */}}
{{- define "interlink-vk.config" -}}
{{- $e := .Values.edge }}
{{- $edge := dict "url" $e.url "timeout_seconds" $e.timeoutSeconds }}
{{- if eq $e.auth "oidc" }}
{{- $oidc := dict "issuer" $e.oidc.issuer "client_id" $e.oidc.clientId }}
{{- with $e.oidc.audience }}{{ $_ := set $oidc "audience" . }}{{ end }}
{{- with $e.oidc.scope }}{{ $_ := set $oidc "scope" . }}{{ end }}
{{- $_ := set $edge "oidc" $oidc }}
{{- end }}
{{- $cfg := dict "node_name" (include "interlink-vk.nodeName" .) "edge" $edge "kubelet_port" .Values.kubeletPort }}
{{- with .Values.node.labels }}{{ $_ := set $cfg "labels" . }}{{ end }}
{{- with .Values.node.taints }}{{ $_ := set $cfg "taints" . }}{{ end }}
{{- $capacity := dict }}
{{- range $k, $v := .Values.node.capacity }}
{{- $_ := set $capacity $k (ternary $v (toString $v) (eq $k "accelerators")) }}
{{- end }}
{{- $_ := set $cfg "capacity" $capacity }}
{{- $cfg = merge $cfg .Values.settings }}
{{- toYaml $cfg }}
{{- end }}
