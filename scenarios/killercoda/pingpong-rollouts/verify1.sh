#!/usr/bin/env bash
kubectl -n argo-rollouts rollout status deployment/argo-rollouts --timeout=5s >/dev/null \
  && kubectl argo rollouts version >/dev/null
