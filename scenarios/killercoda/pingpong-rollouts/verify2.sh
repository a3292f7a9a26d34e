#!/usr/bin/env bash
[ "$(kubectl -n pingpong get rollout ponger -o jsonpath='{.status.phase}')" = "Healthy" ]
