#!/bin/sh
# Container entry point for Mosquitto: builds the password file and the ACL Mosquitto reads
# (in MOSQUITTO_RUN_DIR, default /mosquitto/run) from the environment, copies the TLS files
# (from MOSQUITTO_CERTS_SOURCE, default /mosquitto/certs, made by deploy/make-certs.sh) beside
# them so that Mosquitto's own user can read them, then runs "$@".
#
#   MQTT_GATEWAY_PASSWORD    password of the user archwatch-gateway (reads every topic)
#   MQTT_DEVICE_CREDENTIALS  "device-id:password device-id:password ..." (whitespace between)
#   MQTT_ZIGBEE2MQTT_PASSWORD  optional: password of the user zigbee2mqtt
#
# Passwords go in .env, never in the repository. They are hashed by mosquitto_passwd; the
# files are readable by Mosquitto's user only.
set -eu

run_dir="${MOSQUITTO_RUN_DIR:-/mosquitto/run}"
acl_source="${MOSQUITTO_ACL_SOURCE:-/mosquitto/config/acl}"
certs_source="${MOSQUITTO_CERTS_SOURCE:-/mosquitto/certs}"
: "${MQTT_GATEWAY_PASSWORD:?set MQTT_GATEWAY_PASSWORD in .env}"

# The same rule as archwatch's settings: a placeholder is not a password.
refuse_placeholder() {
  case "$(printf '%s' "$2" | tr '[:upper:]' '[:lower:]')" in
    ""|changeme|change-me|change_me|password|secret|admin|example|xxx)
      echo "prepare.sh: the MQTT password of $1 is a placeholder; set a real one in .env" >&2
      exit 1 ;;
  esac
}
refuse_placeholder archwatch-gateway "$MQTT_GATEWAY_PASSWORD"

umask 077
mkdir -p "$run_dir"
passwd="$run_dir/passwd"
rm -f "$passwd"
mosquitto_passwd -c -b "$passwd" archwatch-gateway "$MQTT_GATEWAY_PASSWORD"
if [ -n "${MQTT_ZIGBEE2MQTT_PASSWORD:-}" ]; then
  refuse_placeholder zigbee2mqtt "$MQTT_ZIGBEE2MQTT_PASSWORD"
  mosquitto_passwd -b "$passwd" zigbee2mqtt "$MQTT_ZIGBEE2MQTT_PASSWORD"
fi
for pair in ${MQTT_DEVICE_CREDENTIALS:-}; do
  user="${pair%%:*}"
  password="${pair#*:}"
  if [ -z "$user" ] || [ "$user" = "$pair" ] || [ -z "$password" ]; then
    echo "prepare.sh: MQTT_DEVICE_CREDENTIALS entries must be device-id:password" >&2
    exit 1
  fi
  refuse_placeholder "$user" "$password"
  mosquitto_passwd -b "$passwd" "$user" "$password"
done
cp "$acl_source" "$run_dir/acl"
chmod 0600 "$passwd" "$run_dir/acl"
mkdir -p "$run_dir/certs"
for f in ca.crt server.crt server.key; do
  if [ ! -f "$certs_source/$f" ]; then
    echo "prepare.sh: $certs_source/$f missing: make it with deploy/make-certs.sh" >&2
    exit 1
  fi
  cp "$certs_source/$f" "$run_dir/certs/$f"
done
if [ "$(id -u)" = 0 ] && id mosquitto >/dev/null 2>&1; then
  chown -R mosquitto:mosquitto "$run_dir"
fi
exec "$@"
