# shellcheck shell=bash
# Checks after scenarios/walkthroughs/kind.md, sourced by
# `scripts/doc-blocks.py run scenarios/walkthroughs/kind.md kind --after ...`
# in the walkthrough's own shell (its port-forwards to Prometheus on 9090 and
# Tempo on 3200 are still up). Each check names what failed.

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# One value of an instant query, or "none".
promql() {
  curl -fsS --max-time 10 localhost:9090/api/v1/query --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "none")'
}

# errors and slow were aborted at the 20% step: at most one pod of five ever
# ran them (ponger_build_info has one series per pod, version from the binary).
for version in errors slow; do
  pods="$(promql "max_over_time(count(ponger_build_info{version=\"$version\"})[30m:10s])")"
  [ "$pods" = 1 ] || fail "$version ran on $pods pods at most; aborted at 20% means exactly 1 of 5"
  echo "ok: $version never went past the 20% step (1 pod of 5)"
done

# Their analysis runs failed; best's rollout is Healthy on ponger:best.
failed_runs="$(kubectl -n pingpong get analysisrun -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Failed$' || true)"
[ "$failed_runs" -ge 2 ] || fail "expected the analysis runs of errors and slow Failed, found $failed_runs Failed"
echo "ok: $failed_runs analysis runs Failed (errors, slow)"
phase="$(kubectl -n pingpong get rollout ponger -o jsonpath='{.status.phase}')"
image="$(kubectl -n pingpong get rollout ponger -o jsonpath='{.spec.template.spec.containers[0].image}')"
if [ "$phase" != Healthy ] || [ "$image" != ponger:best ]; then
  fail "rollout is $phase on $image, expected Healthy on ponger:best"
fi
echo "ok: best promoted, the rollout is Healthy"

# An exemplar's trace ID (the walkthrough's $trace_id, from Prometheus) is a
# trace Tempo returns, with the ponger's child span.
[ -n "${trace_id:-}" ] || fail "the walkthrough found no exemplar trace ID in Prometheus"
curl -fsS --max-time 10 "localhost:3200/api/traces/$trace_id" | grep -q '"injected delay"' ||
  fail "Tempo has no trace $trace_id with an injected delay span"
echo "ok: Prometheus exemplar $trace_id is a trace in Tempo"
