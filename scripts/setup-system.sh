#!/usr/bin/env bash
# Install the system packages and Node test peers the demo and tests need, only when missing.
# Usage: scripts/setup-system.sh [demo|test|bench]   (bench: what test needs, and the load tools)
# This is the one list of Debian packages: `make demo`, `make test`, `make bench` and .ci/run call it.
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-test}

need=()
# pkg COMMAND DEBIAN-PACKAGE FOR   # why — FOR lists the targets (demo, test, bench) that need it
pkg() {
  [[ ",$3," == *",$want,"* ]] || return 0
  command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || need+=("$2")
}
pkg redis-server redis-server demo,test,bench   # sessions, pending logins, caches; tests start their own servers
pkg redis-cli    redis-tools  test,bench        # the Redis Cluster and TLS tests build clusters with redis-cli
pkg openssl      openssl      test,bench        # test certificates (Redis TLS, SAML signing keys)
pkg xmlsec1      xmlsec1      test,bench        # the pysaml2 test IdP signs with it; minted assertions are verified by it
pkg chromium     chromium     test,bench        # browser tests: Playwright drives Debian's Chromium
pkg node         nodejs       test,bench        # the npm oidc-provider test IdP and the SDK peers run on Node
pkg npm          npm          test,bench        # installs the Node test peers from their lock (npm ci)
pkg nginx        nginx-light  test,bench        # bench/bench_scaleout.py: the load balancer in front of two bridges; the Python client's ceiling (bench/_peers.py)
pkg ab           apache2-utils test,bench       # the served benchmarks (bench/_peers.py): keep-alive C load generator against the real gunicorn server; their smoke tests

if [ "$want" = demo ] && [ ${#need[@]} -gt 0 ] && [ "${need[*]}" = "redis-server" ]; then
  # The demo can use a Redis that already answers on 127.0.0.1:6379.
  if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then need=(); fi
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
    exit 1
  fi
  echo "installing ${need[*]} (apt-get)…"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Node peers (the npm oidc-provider IdP), exactly from their lock file.
if [ "$want" != demo ] || command -v npm >/dev/null 2>&1; then
  if [ ! -f tests/peers/node_modules/.package-lock.json ] || \
     [ tests/peers/package-lock.json -nt tests/peers/node_modules/.package-lock.json ]; then
    (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
