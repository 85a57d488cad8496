#!/usr/bin/env bash
# Installs the Debian packages a make target needs, or stops at once with the exact command to run.
#   tools/system-packages.sh demo|test
# Each entry is "command-that-proves-it-is-there:package [package...]".
set -euo pipefail

case "${1:-}" in
  demo) wanted=("python3-venv-check:python3-venv") ;;
  # npm: the web UI build and playwright-core; chromium: the HTML report and the browser tests
  # (Debian's build, never a downloaded browser); fonts so pages render text.
  test) wanted=("python3-venv-check:python3-venv" "npm:npm" "chromium:chromium fonts-dejavu-core") ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac

missing=()
for entry in "${wanted[@]}"; do
  probe=${entry%%:*}
  packages=${entry#*:}
  if [ "$probe" = python3-venv-check ]; then
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && continue
  else
    command -v "$probe" >/dev/null 2>&1 && continue
  fi
  read -r -a list <<<"$packages"
  missing+=("${list[@]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

command="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${missing[*]}"
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
  echo "missing system packages: ${missing[*]}" >&2
  echo "run as root:  $command" >&2
  exit 1
fi
