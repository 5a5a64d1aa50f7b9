#!/usr/bin/env bash
# bench/stop-start-deploy.sh IMAGE: the stop-then-start deploy script that `wharf-bench deploy`
# compares Wharf's blue-green deploy with, as a plain deploy script on one VM does it:
#
#   1. pull the new image; when that fails, exit 4 (the hook's 4xx) and touch nothing;
#   2. stop the running container and start the new one on the same published port (the port
#      the Caddy route points at);
#   3. health-check it over HTTP; healthy: remove the old container, exit 0;
#      unhealthy: stop and remove the new one, start the old one again, exit 5 (the hook's 5xx).
#
# Environment: APP (container name), PORT (host port on 127.0.0.1), LABEL (key=value put on
# every container, for cleanup), STOP_GRACE (seconds between SIGTERM and SIGKILL, default 1),
# HEALTH_INTERVAL (seconds, default 0.1), HEALTH_RETRIES (failed probes in a row that make the
# new version unhealthy, default 5), HEALTH_DEADLINE (seconds, default 15).
set -uo pipefail

image="${1:?usage: stop-start-deploy.sh IMAGE}"
app="${APP:?APP names the container}"
port="${PORT:?PORT is the published port}"
label="${LABEL:?LABEL marks the containers}"
grace="${STOP_GRACE:-1}"
interval="${HEALTH_INTERVAL:-0.1}"
retries="${HEALTH_RETRIES:-5}"
deadline=$((SECONDS + ${HEALTH_DEADLINE:-15}))
previous="$app-previous"

# 1. Pre-pull: nothing running is touched when this fails.
if ! podman pull -q --tls-verify=false "$image" >/dev/null; then
    echo "pull of $image failed" >&2
    exit 4
fi

# 2. Stop the app, start the new one on the same port.
had_previous=0
if podman container exists "$app"; then
    podman rm -f --time 0 "$previous" >/dev/null 2>&1 || true
    podman stop --time "$grace" "$app" >/dev/null
    podman rename "$app" "$previous"
    had_previous=1
fi

rollback() {
    podman rm -f --time 0 "$app" >/dev/null 2>&1 || true
    if [ "$had_previous" = 1 ]; then
        podman rename "$previous" "$app"
        podman start "$app" >/dev/null
    fi
    echo "$1; rolled back" >&2
    exit 5
}

podman run -d --name "$app" --label "$label" -p "127.0.0.1:$port:8080" "$image" >/dev/null ||
    rollback "the new version did not start"

# 3. Health check.
failures=0
until curl -fsS -o /dev/null --max-time 1 "http://127.0.0.1:$port/" 2>/dev/null; do
    failures=$((failures + 1))
    if [ "$failures" -ge "$retries" ] || [ "$SECONDS" -ge "$deadline" ]; then
        rollback "the new version failed $failures health probes"
    fi
    sleep "$interval"
done

# Healthy: clean up the old container.
if [ "$had_previous" = 1 ]; then
    podman rm -f --time 0 "$previous" >/dev/null
fi
exit 0
