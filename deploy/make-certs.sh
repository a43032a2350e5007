#!/bin/sh
# Makes a private CA and a server certificate for Mosquitto's TLS listener:
#   sh deploy/make-certs.sh [OUT_DIR] [HOSTNAME_OR_IP ...]
# OUT_DIR defaults to deploy/certs (mounted into the mosquitto container). The server
# certificate names every HOSTNAME_OR_IP given (devices must connect by one of them), plus
# localhost, 127.0.0.1 and mosquitto (the compose service). Copy OUT_DIR/ca.crt to the devices;
# ca.key stays on the host (it signs certificates) and is never mounted.
set -eu

out="${1:-deploy/certs}"
[ "$#" -gt 0 ] && shift
days="${CERT_DAYS:-825}"
san="DNS:localhost,DNS:mosquitto,IP:127.0.0.1"
for name in "$@"; do
  case "$name" in
    *[!0-9.]*) san="$san,DNS:$name" ;;
    *) san="$san,IP:$name" ;;
  esac
done

mkdir -p "$out"
umask 077
if [ ! -f "$out/ca.key" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
    -subj "/CN=archwatch MQTT CA" -keyout "$out/ca.key" -out "$out/ca.crt" 2>/dev/null
fi
openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=archwatch MQTT broker" \
  -keyout "$out/server.key" -out "$out/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san" > "$out/server.ext"
openssl x509 -req -sha256 -days "$days" -in "$out/server.csr" -CA "$out/ca.crt" \
  -CAkey "$out/ca.key" -CAcreateserial -extfile "$out/server.ext" -out "$out/server.crt" 2>/dev/null
rm -f "$out/server.csr" "$out/server.ext"
chmod 0644 "$out/ca.crt" "$out/server.crt"
# Mosquitto loads its certificates before dropping root; the key stays private.
chmod 0600 "$out/server.key"
echo "made $out/ca.crt and $out/server.crt ($san)"
