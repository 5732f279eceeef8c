#!/bin/sh
# Entry point of the `mosquitto` compose service (eclipse-mosquitto:2 image): build the password file,
# then run the broker. Users: every MQTT_PASSWORD_<username>=<password> variable (e.g. MQTT_PASSWORD_worker),
# plus the hashed `user:hash` lines of /mosquitto/config/passwd.extra (deploy/mosquitto/passwd).
set -eu
AUTH_DIR=/mosquitto/auth
PASSWD="$AUTH_DIR/passwd"
umask 077
mkdir -p "$AUTH_DIR" /mosquitto/data
: > "$PASSWD.new"
env | sed -n 's/^MQTT_PASSWORD_//p' | while IFS= read -r entry; do
    user=${entry%%=*}
    password=${entry#*=}
    if [ -z "$password" ]; then
        echo "start.sh: MQTT_PASSWORD_$user is empty; refusing to create user $user" >&2
        exit 2
    fi
    mosquitto_passwd -b "$PASSWD.new" "$user" "$password"
done
if [ -f /mosquitto/config/passwd.extra ]; then
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' /mosquitto/config/passwd.extra >> "$PASSWD.new" || true
fi
if [ ! -s "$PASSWD.new" ]; then
    echo "start.sh: no MQTT users: set MQTT_PASSWORD_<user> variables or add entries to deploy/mosquitto/passwd" >&2
    exit 2
fi
mv "$PASSWD.new" "$PASSWD"
# TLS: the `certs` service wrote the broker's certificate for the edgeline user; give the broker a copy.
TLS_DIR=/mosquitto/tls
mkdir -p "$TLS_DIR"
for file in ca.pem broker.pem broker.key; do
    if [ ! -s "/mosquitto/certs/$file" ]; then
        echo "start.sh: /mosquitto/certs/$file is missing: run the certs service (edgeline certs init/broker)" >&2
        exit 2
    fi
    cp "/mosquitto/certs/$file" "$TLS_DIR/$file"
done
# The broker drops root privileges to user `mosquitto` before it reads these files.
chown -R mosquitto:mosquitto "$AUTH_DIR" /mosquitto/data "$TLS_DIR"
exec /usr/sbin/mosquitto -c /mosquitto/config/mosquitto.conf
