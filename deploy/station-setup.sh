#!/bin/sh
# One-shot `station-setup` compose service: give a station its X25519 key pair (once; the private key stays
# in the station's volume, mode 0600) and register the public key with the pipeline (`station add` is an
# upsert, so running this again is harmless). Needs EDGELINE_DATABASE_URL, STATION_NAME, STATION_KEY_FILE.
set -eu
: "${STATION_NAME:?set STATION_NAME (the station name, also its MQTT username)}"
: "${STATION_KEY_FILE:?set STATION_KEY_FILE (where the station keeps its private key)}"
STATION_LINE="${STATION_LINE:-${EDGELINE_LINE:-line1}}"
PUB_FILE="$STATION_KEY_FILE.pub"
if [ ! -f "$STATION_KEY_FILE" ]; then
    edgeline station init --key-file "$STATION_KEY_FILE" > "$PUB_FILE.new"
    mv "$PUB_FILE.new" "$PUB_FILE"
fi
if [ ! -s "$PUB_FILE" ]; then
    echo "station-setup: $STATION_KEY_FILE exists but its public key $PUB_FILE is missing;" \
        "remove the key file to create a new pair" >&2
    exit 2
fi
PUBLIC_KEY=$(cat "$PUB_FILE")
exec edgeline station add --line "$STATION_LINE" --public-key="$PUBLIC_KEY" "$STATION_NAME"
