#!/usr/bin/env bash
# Installs what Wharf and its tests need on a Debian 12 machine, when it is missing, and starts
# the services the tests use. Sourced by scripts/test and scripts/up; every step is idempotent.
set -euo pipefail

WHARF_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export WHARF_ROOT

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
# need_packages PKG...: installs the Debian packages that are not installed yet.
need_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq
        apt_updated=1
    fi
    log "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# need_rust: cargo, rustfmt, clippy and cargo-nextest.
need_rust() {
    command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs) first" >&2; exit 1; }
    local component
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            command -v rustup >/dev/null || { echo "cargo $component is missing: install it with your Rust toolchain" >&2; exit 1; }
            log "installing $component"
            rustup component add "$component"
        fi
    done
    if ! cargo nextest --version >/dev/null 2>&1; then
        log "installing cargo-nextest"
        cargo install --locked cargo-nextest
    fi
}

# cargo_target_dir: where cargo puts what it builds: CARGO_TARGET_DIR, a cargo config's
# build.target-dir, or target/ in the workspace. Run from the workspace.
cargo_target_dir() {
    cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# need_testdata: GitHub's OpenAPI description, webhook examples and Playwright from npm.
need_testdata() {
    command -v npm >/dev/null || need_packages nodejs npm
    if [ ! -f "$WHARF_ROOT/testdata/node_modules/@octokit/openapi/generated/api.github.com.json" ] \
        || [ ! -f "$WHARF_ROOT/testdata/node_modules/@octokit/webhooks-examples/api.github.com/index.json" ] \
        || [ ! -f "$WHARF_ROOT/testdata/node_modules/playwright-core/package.json" ]; then
        log "installing GitHub's API description, webhook examples and Playwright (npm)"
        (cd "$WHARF_ROOT/testdata" && npm ci --no-audit --no-fund --loglevel=error)
    fi
    export WHARF_OCTOKIT_DIR="$WHARF_ROOT/testdata/node_modules/@octokit"
}

# need_postgres: a running PostgreSQL 15 with a role `wharf` that may create databases.
# Exports WHARF_TEST_POSTGRES_URL.
need_postgres() {
    need_packages postgresql
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $4}' | grep -q online; then
        log "starting PostgreSQL"
        local cluster
        cluster=$(pg_lsclusters -h | awk 'NR==1 {print $1" "$2}')
        # shellcheck disable=SC2086
        as_root pg_ctlcluster $cluster start
    fi
    local port
    port=$(pg_lsclusters -h | awk '$4 == "online" {print $3; exit}')
    local deadline=$((SECONDS + 30))
    until as_root su postgres -c "psql -p $port -qAtc 'SELECT 1'" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { echo "PostgreSQL did not start" >&2; exit 1; }
        sleep 0.2
    done
    as_root su postgres -c "psql -p $port -qAtc \"SELECT 1 FROM pg_roles WHERE rolname = 'wharf'\"" | grep -q 1 \
        || as_root su postgres -c "psql -p $port -qc \"CREATE ROLE wharf LOGIN CREATEDB PASSWORD 'wharf'\""
    export WHARF_TEST_POSTGRES_URL="postgres://wharf:wharf@127.0.0.1:$port/postgres"
}

# drop_test_databases: removes the per-test databases a PostgreSQL run created.
drop_test_databases() {
    local port
    port=$(pg_lsclusters -h | awk '$4 == "online" {print $3; exit}')
    as_root su postgres -c "psql -p $port -qAtc \"SELECT datname FROM pg_database WHERE datname LIKE 'wharf\\_test\\_%'\"" \
        | while read -r database; do
            as_root su postgres -c "psql -p $port -qc 'DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)'" >/dev/null
        done
}

# need_podman: Podman configured for this kind of machine (runc, cgroupfs, file events,
# ulimits a container may set), with Debian's static busybox for FROM-scratch test images.
# Podman 4.3 on Debian 12 uses CNI networks; the dnsname plugin lets the containers of a
# compose stack reach each other by name on the stack's network.
need_podman() {
    need_packages podman runc busybox-static uidmap iptables iproute2 golang-github-containernetworking-plugin-dnsname
    local conf=/etc/containers/containers.conf
    if ! grep -q 'wharf: podman settings' "$conf" 2>/dev/null; then
        log "configuring Podman ($conf)"
        as_root mkdir -p /etc/containers
        as_root tee "$conf" >/dev/null <<'CONF'
# wharf: podman settings for machines without systemd or cgroup v2 delegation
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
    fi
}

# clear_test_containers: removes what deploy tests of an earlier, interrupted run left in Podman
# (containers, networks, volumes of test agents, named `dep-…` or `cmp-…`). A test killed before
# its cleanup leaves its container's port forwarding behind, and a later test that binds the same
# loopback port would be answered by that dead container instead of its own server.
clear_test_containers() {
    local kind item labels
    for kind in container network volume; do
        labels=.Labels
        if [[ $kind == container ]]; then labels=.Config.Labels; fi
        if [[ $kind == container ]]; then
            podman ps --all --quiet --filter label=wharf.deploy.agent
        else
            podman "$kind" ls --quiet --filter label=wharf.deploy.agent
        fi 2>/dev/null | while read -r item; do
            [[ "$(podman "$kind" inspect --format "{{index $labels \"wharf.deploy.agent\"}}" "$item")" =~ \
                ^(dep|cmp)-[a-z]+-[0-9a-f]+$ ]] || continue
            if [[ $kind == container ]]; then
                podman rm --force --volumes --time 0 "$item" >/dev/null 2>&1 || true
            else
                podman "$kind" rm "$item" >/dev/null 2>&1 || true
            fi
        done || true
    done
}

# need_example_base: the base image of examples/hello, made here from Debian's static busybox
# (nothing else in it), so the example builds without any registry on the internet.
EXAMPLE_BASE=localhost/wharf-examples/busybox:latest
need_example_base() {
    need_podman
    podman image exists "$EXAMPLE_BASE" && return
    log "making $EXAMPLE_BASE from Debian's static busybox (the base image of examples/hello)"
    local dir
    dir="$(mktemp -d)"
    cp /bin/busybox "$dir/busybox"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\n' >"$dir/Containerfile"
    podman build --quiet --tag "$EXAMPLE_BASE" "$dir" >/dev/null
    rm -rf "$dir"
}

# need_browser: Debian's Chromium (and a font, which only Chromium's recommendations bring),
# which the dashboard's browser test drives through Playwright
# (playwright-core comes with need_testdata; no browser is ever downloaded).
need_browser() {
    need_packages chromium fonts-liberation
}

# need_registry: Debian's docker-registry (Distribution 2.8); tests start their own instances.
need_registry() {
    need_packages docker-registry
}

# need_systemd_analyze: `systemd-analyze verify`, which the tests run on contrib/systemd's units;
# it works without systemd running (Debian's systemd package).
need_systemd_analyze() {
    command -v systemd-analyze >/dev/null || need_packages systemd
}

# need_caddy: Caddy, the edge that routes apps by host name. Debian's package would start a
# system service where systemd runs; Wharf's agent talks to whichever Caddy answers on
# WHARF_CADDY_ADMIN, or starts its own.
need_caddy() {
    need_packages caddy
}
