#!/usr/bin/env bash
# Builds the JavaScript processors in functions/js with componentize-js (the
# version pinned in functions/js/package-lock.json), installing Node.js
# (Debian's) and the npm packages when missing. Components land in
# functions/js/target/<name>.wasm; the e2e tests deploy them.
set -euo pipefail
cd "$(dirname "$0")/../functions/js"
say() { printf 'js-guests: %s\n' "$*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "installing nodejs and npm (apt)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -f node_modules/@bytecodealliance/componentize-js/package.json ]; then
  say "installing componentize-js (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs
