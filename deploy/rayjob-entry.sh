#!/usr/bin/env bash
# The RayJob's entrypoint (deploy/rayjob.yaml), run by Ray's job supervisor on the head pod. KubeRay's
# submitter pod passes the manifest's entrypoint through `bash -ce` before `ray job submit`: nothing in
# the manifest may need expanding there (TARGET_URL lives on the head), so the shell is this script's.
# The results document is printed on stdout (the job's logs) and written to SSEPROBE_OUT; the exit code
# is sseprobe's own (exec), so the Ray job, the RayJob and the submitter's Kubernetes Job follow it:
# 0 GREEN -> succeeded; 1 YELLOW, 2 RED, 3 UNKNOWN -> failed (the logs say which).
set -eu
cd "$(dirname "$0")/.."
: "${TARGET_URL:?is not set on the head pod (rayClusterSpec.headGroupSpec ... env)}"
exec sseprobe compare \
    --scenario "${SSEPROBE_SCENARIO:-scenarios/staging-load.toml}" \
    --canonical "${CANONICAL_URL:-$TARGET_URL}" --legacy "${LEGACY_URL:-$TARGET_URL}" \
    --cluster "${SSEPROBE_CLUSTER:-auto}" --on-node-loss abort \
    --json --out "${SSEPROBE_OUT:-/tmp/sseprobe-compare.json}"
