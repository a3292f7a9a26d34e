# shellcheck shell=bash
# Checks after scenarios/walkthroughs/docker-compose.md, sourced by
# `scripts/doc-blocks.py run scenarios/walkthroughs/docker-compose.md compose --after ...`
# with the stack still up. Each check names what failed.

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Grafana: both provisioned datasources answer their health check, the
# dashboard is provisioned (anonymous Viewer, as users see it).
for uid in prometheus tempo; do
  curl -fsS --max-time 10 "localhost:3000/api/datasources/uid/$uid/health" | grep -q '"status":"OK"' ||
    fail "Grafana datasource $uid is not healthy"
  echo "ok: Grafana datasource $uid healthy"
done
curl -fsS --max-time 10 localhost:3000/api/dashboards/uid/pingpong |
  grep -q '"title":"Ping pong: canary with exemplars"' || fail "Grafana has no provisioned dashboard pingpong"
echo "ok: dashboard provisioned"

# Prometheus holds exemplars of the pings (slow ran a while).
exemplar_trace="$(curl -fsS --max-time 10 localhost:9090/api/v1/query_exemplars \
  --data-urlencode 'query=http_request_duration_seconds_bucket{job="ponger"}' \
  --data-urlencode "start=$(($(date +%s) - 1800))" --data-urlencode "end=$(date +%s)" |
  python3 -c 'import json,sys; print(next((e["labels"]["trace_id"] for s in json.load(sys.stdin)["data"] for e in s["exemplars"]), ""))')"
[ -n "$exemplar_trace" ] || fail "Prometheus holds no exemplar of http_request_duration_seconds_bucket"
echo "ok: Prometheus exemplar with trace $exemplar_trace"

# Tempo returns that exemplar's trace.
curl -fsS --max-time 10 --retry 10 --retry-delay 3 --retry-all-errors "localhost:3200/api/traces/$exemplar_trace" |
  grep -q '"injected delay"' || fail "Tempo does not return the exemplar's trace $exemplar_trace"
echo "ok: Tempo returns trace $exemplar_trace"
