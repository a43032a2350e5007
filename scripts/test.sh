#!/usr/bin/env bash
# archwatch's one test command. Works alone on a fresh machine of this kind:
#   - installs what is missing: Mosquitto, socat, openssl, PostgreSQL, Chromium (Debian packages), the Python
#     package with its test extras;
#   - builds InfluxDB OSS 1.8.10 once with `go install` into a cache outside the clone;
#   - runs ruff, mypy, check-config on every example, then pytest. The tests start the real
#     servers themselves on free loopback ports (tests/servers.py) and fail if one cannot.
# Extra arguments go to pytest, e.g. `scripts/test.sh -k spool`.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v socat >/dev/null 2>&1 || need_apt+=(socat)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need_apt+=(postgresql)
# The console test drives Debian's Chromium (never Playwright's own browser download).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]} from Debian's packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian starts the packaged services; the tests run their own instances.
$SUDO systemctl disable --now mosquitto >/dev/null 2>&1 || true

CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/archwatch/influxd-1.8.10"
if [ ! -x "$CACHE/bin/influxd" ]; then
  echo "== building InfluxDB OSS 1.8.10 (once; cached in $CACHE)"
  mkdir -p "$CACHE"
  build_influxd() {
    (cd /tmp && GOBIN="$CACHE/bin" GOFLAGS=-mod=mod go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10)
  }
  if ! build_influxd; then
    # A newer Go may fail on a 2020-era dependency: retry once with an older toolchain,
    # which the go command fetches from the module proxy.
    echo "== go install failed; retrying once with GOTOOLCHAIN=go1.21.13"
    GOTOOLCHAIN=go1.21.13 build_influxd
  fi
fi
export ARCHWATCH_INFLUXD="$CACHE/bin/influxd"

PY="${PYTHON:-python3}"
# Install this checkout (editable) unless the installed archwatch already is this checkout:
# another clone's editable install would otherwise be tested in its place.
installed="$(cd / && "$PY" -c 'import gateway, os; print(os.path.dirname(os.path.dirname(os.path.realpath(gateway.__file__))))' 2>/dev/null || true)"
if [ "$installed" != "$(pwd -P)" ] || ! "$PY" -c "import pytest, hypothesis, psycopg" >/dev/null 2>&1 \
   || ! command -v archwatch >/dev/null 2>&1; then
  echo "== installing archwatch (this checkout) with its test extras"
  "$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
fi

echo "== ruff"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
echo "== mypy"
"$PY" -m mypy
echo "== check-config on every example site and shipped profile"
archwatch check-config examples/*site*.yaml firmware_configs/*.yaml standards/*.yaml >/dev/null
echo "== grafana: committed dashboards and provisioning match the generator"
grafana_out="$(mktemp -d)"
archwatch grafana export "$grafana_out" >/dev/null
for part in dashboards provisioning; do
  if [ -d "grafana/$part" ] || [ -d "$grafana_out/$part" ]; then
    if ! diff -r "grafana/$part" "$grafana_out/$part"; then
      echo "error: grafana/$part differs from the generated output (diff above);" \
           "run \`archwatch grafana export grafana\` and commit the result" >&2
      rm -rf "$grafana_out"
      exit 1
    fi
  fi
done
rm -rf "$grafana_out"

echo "== pytest"
"$PY" -m pytest "$@"
