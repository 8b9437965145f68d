#!/usr/bin/env bash
# Publishes a policy bundle into a directory an HTTP server serves, atomically:
# the bytes go to a temporary file in the same directory, are flushed, and are
# renamed over the published name, so a poll sees the old bundle or the new
# one, never a partial file.
#
#   scripts/publish-bundle.sh BUNDLE DIR [NAME]     (NAME: policy.bundle)
#
# Check the bundle first (`meshward bundle verify BUNDLE --public-key KEY`):
# proxies refuse a broken or older bundle anyway, and keep the last good one.
set -euo pipefail

if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then
  echo "usage: $0 BUNDLE DIR [NAME]" >&2
  exit 2
fi
src=$1
dir=$2
name=${3:-policy.bundle}
case "$name" in
  */* | .* | "") echo "$0: NAME must be a plain file name" >&2; exit 2 ;;
esac
[ -f "$src" ] || { echo "$0: no bundle file \`$src\`" >&2; exit 2; }
[ -d "$dir" ] || { echo "$0: no directory \`$dir\`" >&2; exit 2; }

tmp=$(mktemp "$dir/.$name.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat "$src" >"$tmp"
chmod 0644 "$tmp"
# Servers such as nginx derive a file's ETag from its mtime and size: give
# the new file a later mtime than the published one, so two publishes within
# one second never share an ETag (a proxy would answer the second with 304).
if [ -e "$dir/$name" ]; then
  old=$(stat -c %Y "$dir/$name")
  if [ "$(date +%s)" -le "$old" ]; then
    touch -d "@$((old + 1))" "$tmp"
  fi
fi
sync "$tmp"
mv -f "$tmp" "$dir/$name"
trap - EXIT
