{{/*
Names and labels shared by every template.

With the release name "tidemark" (as in the README's install commands) every object has the
name kustomize/base gives it: tidemark, tidemark-controller, tidemark-backup, ...
*/}}

{{/* The app name: the chart's, or nameOverride. */}}
{{- define "tidemark.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name: fullnameOverride, else the release name when it already
says "tidemark", else "<release>-tidemark". Cut to 63 characters (a label value's limit).
*/}}
{{- define "tidemark.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "tidemark.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart-version, for the helm.sh/chart label ("+" is not allowed in label values). */}}
{{- define "tidemark.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of every object: Helm's usual ones plus app.kubernetes.io/part-of, which kustomize/base
puts on everything too.
*/}}
{{- define "tidemark.commonLabels" -}}
helm.sh/chart: {{ include "tidemark.chart" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tidemark
{{- end -}}

{{/*
Selector labels of one component ("controller" or "node-agent"): name and component as in
kustomize/base, plus the release (app.kubernetes.io/instance), so that two releases' selectors
never overlap. Called with (dict "ctx" $ "component" "controller").
*/}}
{{- define "tidemark.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidemark.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of an object belonging to one component: common + selector labels. */}}
{{- define "tidemark.labels" -}}
{{ include "tidemark.commonLabels" .ctx }}
app.kubernetes.io/name: {{ include "tidemark.name" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The controller's ServiceAccount name. */}}
{{- define "tidemark.serviceAccountName" -}}
{{- if .Values.serviceAccount.server.create -}}
{{- default (include "tidemark.fullname" .) .Values.serviceAccount.server.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.server.name -}}
{{- end -}}
{{- end -}}

{{/* The controller's and node agent's image: repository:tag, or repository@digest. */}}
{{- define "tidemark.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/*
The Secret Locations use by default (key "cloud"): existingSecret, else the one the chart
creates from secretContents, else none (empty string): no Secret, or useSecret false.
*/}}
{{- define "tidemark.credentialsSecret" -}}
{{- if .Values.credentials.useSecret -}}
{{- if .Values.credentials.existingSecret -}}
{{- .Values.credentials.existingSecret -}}
{{- else if .Values.credentials.secretContents -}}
{{- default (printf "%s-credentials" (include "tidemark.fullname" .)) .Values.credentials.name -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The restic repositories' password Secret (mounted by the controller and node agent). */}}
{{- define "tidemark.repoCredentialsSecret" -}}
{{- printf "%s-repo-credentials" (include "tidemark.fullname" .) -}}
{{- end -}}

{{/* The node agent's namespace. */}}
{{- define "tidemark.nodeAgentNamespace" -}}
{{- default (printf "%s-node-agent" .Release.Namespace) .Values.nodeAgent.namespace -}}
{{- end -}}

{{/*
A Location's provider from Velero's spelling: "aws" and "velero.io/aws" are S3 (tidemark's s3
provider speaks to any S3-compatible store), empty means s3 (the CRD's default). Other
providers (gcp, azure) are not supported yet: fail at render time, naming the location.
Called with (list "<location name>" "<provider>").
*/}}
{{- define "tidemark.provider" -}}
{{- $name := index . 0 -}}
{{- $p := index . 1 | default "s3" | toString | lower -}}
{{- if has $p (list "s3" "aws" "velero.io/aws") -}}
s3
{{- else if eq $p "filesystem" -}}
filesystem
{{- else -}}
{{- fail (printf "configuration.backupStorageLocation %q: provider %q is not supported (s3, aws or filesystem)" $name $p) -}}
{{- end -}}
{{- end -}}

{{/*
A backup template (Schedule.spec.template, BackupPolicy.spec.template) from values written the
way Velero's chart takes a schedule's template: storageLocation becomes location, and the
volume settings Velero keeps at the top (snapshotVolumes, defaultVolumesToFsBackup,
csiSnapshotTimeout, resourcePolicy) move under volumes. Every other key is passed on as is;
the CRD's schema refuses what tidemark does not know.
*/}}
{{- define "tidemark.backupTemplate" -}}
{{- $t := deepCopy (default (dict) .) -}}
{{- if hasKey $t "storageLocation" -}}
{{- if not (hasKey $t "location") -}}
{{- $_ := set $t "location" $t.storageLocation -}}
{{- end -}}
{{- $_ := unset $t "storageLocation" -}}
{{- end -}}
{{- $volumes := deepCopy (default (dict) $t.volumes) -}}
{{- range $key := list "snapshotVolumes" "defaultVolumesToFsBackup" "csiSnapshotTimeout" "resourcePolicy" -}}
{{- if hasKey $t $key -}}
{{- $v := get $t $key -}}
{{- /* Velero's resourcePolicy is {kind: configmap, name: NAME}; tidemark's is NAME. */ -}}
{{- if and (eq $key "resourcePolicy") (kindIs "map" $v) -}}
{{- $v = $v.name -}}
{{- end -}}
{{- $_ := set $volumes $key $v -}}
{{- $_ := unset $t $key -}}
{{- end -}}
{{- end -}}
{{- if $volumes -}}
{{- $_ := set $t "volumes" $volumes -}}
{{- end -}}
{{- toYaml $t -}}
{{- end -}}
