#!/usr/bin/env bash
# Install the Node renderer's dependencies exactly as package-lock.json pins them (npm ci).
# zeromq v6 ships its prebuilt libzmq addon inside the npm tarball, so nothing is fetched
# from anywhere but the npm registry (no GitHub download, no compiler needed).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nodejs npm
  else
    echo "setup.sh: Node.js >= 20 and npm are missing: install them (Debian: apt-get install nodejs npm)" >&2
    exit 1
  fi
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "setup.sh: Node.js $(node --version) is too old: the renderer needs Node.js >= 20" >&2
  exit 1
fi

npm ci --no-audit --no-fund --loglevel=error
# Fail here, not in the tests, if the prebuilt addon does not load on this machine.
node -e 'const z = require("zeromq"); console.log(`node renderer ready: node ${process.version}, libzmq ${z.version}`)'
