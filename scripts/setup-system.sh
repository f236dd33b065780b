#!/usr/bin/env bash
# Install the system packages and Node test peers the demo and tests need, only when missing.
# Usage: scripts/setup-system.sh [demo|test|bench]   (bench: what test needs, and nginx)
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-test}

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ "$want" = bench ]; then
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)   # bench/bench_scaleout.py
  want=test
fi
if [ "$want" = test ]; then
  command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)   # Cluster and TLS tests (tests/redis_topologies.py)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  command -v xmlsec1 >/dev/null 2>&1 || need+=(xmlsec1)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)   # browser tests (Playwright drives it)
fi
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

# Node peers (the npm oidc-provider IdP), from the lock file.
if command -v npm >/dev/null 2>&1; then
  if [ ! -f tests/peers/node_modules/.package-lock.json ] || \
     [ tests/peers/package-lock.json -nt tests/peers/node_modules/.package-lock.json ]; then
    (cd tests/peers && npm ci --no-audit --no-fund --loglevel=error)
  fi
elif [ "$want" = test ]; then
  echo "node/npm are required for the OIDC test peer (apt-get install nodejs npm)" >&2
  exit 1
fi
