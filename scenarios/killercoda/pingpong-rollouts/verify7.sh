#!/usr/bin/env bash
[ "$(kubectl -n pingpong get rollout ponger -o jsonpath='{.status.phase}')" = "Healthy" ] \
  && kubectl -n pingpong get rollout ponger -o jsonpath='{.spec.template.spec.containers[0].image}' | grep -q 'ponger:best'
