#!/usr/bin/env bash
curl -sf localhost:9090/-/ready >/dev/null && curl -sf localhost:3000/api/health >/dev/null
