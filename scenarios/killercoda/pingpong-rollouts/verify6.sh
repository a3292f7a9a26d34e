#!/usr/bin/env bash
id="$(cat /tmp/slow-trace-id 2>/dev/null)"
[ -n "$id" ] && [ "$id" != "none yet" ] \
  && curl -sf "localhost:3200/api/traces/$id" | grep -q 'injected delay'
