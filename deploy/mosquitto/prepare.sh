#!/bin/sh
# Container entry point for Mosquitto: builds the password file and the ACL Mosquitto reads
# (in MOSQUITTO_RUN_DIR, default /mosquitto/run) from the environment, copies the TLS files
# (from MOSQUITTO_CERTS_SOURCE, default /mosquitto/certs, made by deploy/make-certs.sh) beside
# them so that Mosquitto's own user can read them, then runs "$@".
#
#   MQTT_GATEWAY_PASSWORD    password of the user archwatch-gateway (reads every topic)
#   MQTT_DEVICE_CREDENTIALS  "device-id:password device-id:password ..." (whitespace between);
#                            each id as the site file allows it (a-z 0-9 _ . -, at most 64
#                            characters), once, and none of the reserved names below
#   MQTT_ZIGBEE2MQTT_PASSWORD  optional: password of the user zigbee2mqtt
#
# Passwords go in .env, never in the repository. They are hashed by mosquitto_passwd; the
# files are readable by Mosquitto's user only.
# -f: the credentials are split on whitespace below, never expanded as file name patterns.
set -euf

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

# The ACL lets a device write "%u/#" (ESPHome's layout) and "tele/%u/#" and the like: a device
# named like a topic root other devices publish under could forge their readings, and one
# named like another client's login would replace that client's password. The same names as
# RESERVED_DEVICE_IDS in gateway/site.py, which also refuses them in site files
# (tests/test_compose.py keeps the two lists equal).
reserved_ids="archwatch archwatch-gateway cmnd esphome homeassistant shellies stat tasmota tele zigbee2mqtt"
id_chars="abcdefghijklmnopqrstuvwxyz0123456789_.-"
seen_ids=" "
refuse_device_id() {
  case "$1" in
    [!abcdefghijklmnopqrstuvwxyz0123456789]* | *[!$id_chars]*)
      echo "prepare.sh: MQTT device id '$1' is not a site device id (a-z, 0-9, _ . -; starting with a letter or digit)" >&2
      exit 1 ;;
  esac
  if [ "${#1}" -gt 64 ]; then
    echo "prepare.sh: MQTT device id '$1' is longer than 64 characters" >&2
    exit 1
  fi
  for name in $reserved_ids; do
    if [ "$1" = "$name" ]; then
      echo "prepare.sh: MQTT device id '$1' is reserved: it is a topic root other devices publish under or another client's login; with the per-device ACL it could forge their readings" >&2
      exit 1
    fi
  done
  case "$seen_ids" in
    *" $1 "*)
      echo "prepare.sh: MQTT device id '$1' is listed twice in MQTT_DEVICE_CREDENTIALS" >&2
      exit 1 ;;
  esac
  seen_ids="$seen_ids$1 "
}

# Every entry is checked before any file is written.
for pair in ${MQTT_DEVICE_CREDENTIALS:-}; do
  user="${pair%%:*}"
  password="${pair#*:}"
  if [ -z "$user" ] || [ "$user" = "$pair" ] || [ -z "$password" ]; then
    echo "prepare.sh: MQTT_DEVICE_CREDENTIALS entries must be device-id:password" >&2
    exit 1
  fi
  refuse_device_id "$user"
  refuse_placeholder "$user" "$password"
done

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
