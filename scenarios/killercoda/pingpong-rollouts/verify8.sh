#!/usr/bin/env bash
grep -q 'rollouts_pod_template_hash="{{args.canary-hash}}"' /root/pingpong/k8s/base/analysis-template.yaml
