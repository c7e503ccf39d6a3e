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
# The secret travels in the request body, written to a private temporary file: never in an argument list
# (which any local user can read).
set -eu
umask 077

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

body_file="$(mktemp)"
trap 'rm -f "$body_file"' EXIT
{
  printf 'MTX_PATH=%s&MTX_SOURCE_TYPE=%s' "$(enc "${MTX_PATH:-}")" "$(enc "${MTX_SOURCE_TYPE:-}")"
  printf '&MTX_SOURCE_ID=%s&MTX_QUERY=%s' "$(enc "${MTX_SOURCE_ID:-}")" "$(enc "${MTX_QUERY:-}")"
  printf '&hook_secret=%s' "$(enc "$secret")"
} > "$body_file"
url="${api%/}/v1/hooks/mediamtx/$event"

if command -v curl >/dev/null 2>&1; then
  curl -fsS --max-time 15 -H "Content-Type: application/x-www-form-urlencoded" --data-binary "@$body_file" "$url"
else
  wget -q -O - -T 15 --header "Content-Type: application/x-www-form-urlencoded" --post-file "$body_file" "$url"
fi
