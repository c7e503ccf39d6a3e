#!/bin/sh
# MediaMTX hook command: forwards runOnAvailable / runOnUnavailable (runOnReady / runOnNotReady in
# releases before 1.18) to the livedub API.
#
#   runOnAvailable:   sh /hooks/mediamtx-hook.sh ready
#   runOnUnavailable: sh /hooks/mediamtx-hook.sh not-ready
#
# Reads MTX_PATH, MTX_SOURCE_TYPE, MTX_SOURCE_ID, MTX_QUERY (set by MediaMTX; since 1.18.1 MTX_QUERY is
# the query escaped once, which the API decodes), and
# LIVEDUB_API_URL plus LIVEDUB_HOOK_SECRET (or LIVEDUB_HOOK_SECRET_FILE) from the environment.
# Works with busybox (the mediamtx -ffmpeg image) or GNU tools; uses wget, or curl if present.
set -eu

event="${1:-}"
case "$event" in
  ready|not-ready) ;;
  *) echo "usage: $0 ready|not-ready" >&2; exit 2 ;;
esac
api="${LIVEDUB_API_URL:?LIVEDUB_API_URL is not set}"
secret="${LIVEDUB_HOOK_SECRET:-}"
if [ -z "$secret" ] && [ -n "${LIVEDUB_HOOK_SECRET_FILE:-}" ]; then
  secret="$(cat "$LIVEDUB_HOOK_SECRET_FILE")"
fi

# Percent-encode every byte: valid form encoding whatever the value holds.
enc() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n' | sed 's/\(..\)/%\1/g'; }

body="MTX_PATH=$(enc "${MTX_PATH:-}")&MTX_SOURCE_TYPE=$(enc "${MTX_SOURCE_TYPE:-}")"
body="$body&MTX_SOURCE_ID=$(enc "${MTX_SOURCE_ID:-}")&MTX_QUERY=$(enc "${MTX_QUERY:-}")"
url="${api%/}/v1/hooks/mediamtx/$event"

if command -v curl >/dev/null 2>&1; then
  curl -fsS --max-time 15 -H "X-Livedub-Secret: $secret" \
    -H "Content-Type: application/x-www-form-urlencoded" --data "$body" "$url"
else
  wget -q -O - -T 15 --header "X-Livedub-Secret: $secret" \
    --header "Content-Type: application/x-www-form-urlencoded" --post-data "$body" "$url"
fi
