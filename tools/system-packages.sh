#!/usr/bin/env bash
# Installs the Debian packages a make target needs, or stops at once with the exact command to run.
#   tools/system-packages.sh demo|test|containers
# Each entry is "command-that-proves-it-is-there:package [package...]".
set -euo pipefail

# Containers (make images, make container-e2e; docs/deploy.md): podman 4.3 with runc (crun fails on
# the hybrid cgroup hosts seen here), netavark + aardvark-dns for a network whose containers find
# each other by the chart's Service names, mmdebstrap for a local base image when no registry is
# reachable; iptables for netavark; uidmap and slirp4netns for rootless use.
containers=(
  "podman:podman"
  "/usr/sbin/runc:runc"
  "mmdebstrap:mmdebstrap"
  "/usr/lib/podman/netavark:netavark"
  "/usr/lib/podman/aardvark-dns:aardvark-dns"
  # netavark sets up the network's NAT and isolation with iptables (without it: "netavark: No such file")
  "/usr/sbin/iptables:iptables"
  "newuidmap:uidmap"
  "slirp4netns:slirp4netns"
)

case "${1:-}" in
  demo) wanted=("python3-venv-check:python3-venv") ;;
  # npm: the web UI build and playwright-core; chromium: the HTML report and the browser tests
  # (Debian's build, never a downloaded browser); fonts so pages render text. The container
  # packages: make test runs the container end-to-end test (tests/container/).
  # postgresql: the job store's tests run a real server on loopback (tests/postgres_server.py).
  test) wanted=("python3-venv-check:python3-venv" "npm:npm" "chromium:chromium fonts-dejavu-core"
                "pg_ctlcluster:postgresql" "${containers[@]}") ;;
  containers) wanted=("python3-venv-check:python3-venv" "${containers[@]}") ;;
  *) echo "usage: $0 demo|test|containers" >&2; exit 2 ;;
esac

missing=()
for entry in "${wanted[@]}"; do
  probe=${entry%%:*}
  packages=${entry#*:}
  if [ "$probe" = python3-venv-check ]; then
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && continue
  elif [[ $probe == /* ]]; then
    [ -x "$probe" ] && continue
  else
    command -v "$probe" >/dev/null 2>&1 && continue
  fi
  read -r -a list <<<"$packages"
  missing+=("${list[@]}")
done

# podman's settings on these machines (docs/deploy.md#building-the-images): its default nofile/nproc
# ulimits exceed the hard limits here, and crun cannot run on hybrid cgroups. Kept in a drop-in file
# of their own so the step is idempotent and never rewrites an admin's containers.conf.
CONTAINERS_CONF=/etc/containers/containers.conf.d/50-faceflow.conf
containers_conf() {
  cat <<'EOF'
# Written by faceflow's tools/system-packages.sh (make images / make test).
[containers]
# podman's default nofile/nproc limits exceed this host's hard limits: start containers without them.
default_ulimits = []

[engine]
# crun fails here with "cgroups in hybrid mode not supported".
runtime = "runc"

[network]
# netavark + aardvark-dns: containers of a network find each other by name and alias (Debian's
# podman also ships a CNI config, whose plugins are not installed).
network_backend = "netavark"
EOF
}
configure_containers() {
  [ "${1:-}" = test ] || [ "${1:-}" = containers ] || return 0
  if [ -f "$CONTAINERS_CONF" ] && cmp -s "$CONTAINERS_CONF" <(containers_conf); then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ]; then
    mkdir -p "$(dirname "$CONTAINERS_CONF")"
    containers_conf >"$CONTAINERS_CONF.tmp" && mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
    echo "wrote $CONTAINERS_CONF (default_ulimits = [], runtime = \"runc\")"
  else
    user_conf="${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf.d/50-faceflow.conf"
    if ! { [ -f "$user_conf" ] && cmp -s "$user_conf" <(containers_conf); }; then
      echo "podman needs these settings; as root:  tools/system-packages.sh containers" >&2
      echo "or for rootless podman, write them to $user_conf:" >&2
      containers_conf >&2
      exit 1
    fi
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  configure_containers "${1:-}"
  exit 0
fi

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
configure_containers "${1:-}"
