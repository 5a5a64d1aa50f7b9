#!/usr/bin/env bash
# bench/push-pipeline.sh: push to live as a raw shell pipeline, what `wharf-bench deploy` times
# Wharf's push-to-live against: fetch the commit, build, push, pull, run, probe until 200.
# The same steps Wharf takes, without a server, a queue, step reports or a Caddy route.
#
# Environment: WORK (an empty directory), URL (the repository), COMMIT, TAG (the image),
# APP (container name), PORT (host port on 127.0.0.1), LABEL (key=value for cleanup),
# HEALTH_INTERVAL (seconds between probes, default 0.1). Git credentials come through
# GIT_CONFIG_* in the environment, never the command line.
set -euo pipefail

interval="${HEALTH_INTERVAL:-0.1}"
cd "$WORK"
git init -q
git remote add origin "$URL"
git fetch -q --depth 1 origin "$COMMIT"
git checkout -q FETCH_HEAD
podman build -q --format docker -t "$TAG" . >/dev/null
podman push -q --tls-verify=false "$TAG"
podman untag "$TAG" "$TAG"
podman pull -q --tls-verify=false "$TAG" >/dev/null
podman run -d --name "$APP" --label "$LABEL" -p "127.0.0.1:$PORT:8080" "$TAG" >/dev/null
deadline=$((SECONDS + 30))
until curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$PORT/" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
        echo "not healthy within 30 s" >&2
        exit 1
    fi
    sleep "$interval"
done
