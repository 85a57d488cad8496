#!/bin/sh
# `buf breaking`: protos/ must stay wire- and source-compatible with the last release tag (v*), or,
# before the first release, with the commit before HEAD. Usage: tools/buf-breaking.sh PATH_TO_BUF
set -eu
buf=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
ref=$(git describe --tags --abbrev=0 --match 'v*' 2>/dev/null || true)
[ -n "$ref" ] || ref=$(git rev-parse --verify --quiet 'HEAD~1' || true)
if [ -z "$ref" ]; then
  # A shallow clone has nothing to compare with; say so loudly rather than pass in silence.
  echo "buf breaking: SKIPPED - no v* tag and no parent commit in this clone (shallow?)" >&2
  exit 0
fi
echo "buf breaking: protos/ against $ref"
cd protos && "$buf" breaking --against "../.git#ref=$ref,subdir=protos"
