# faceflow entry points. Every target sets up what it needs (the venv, generated code, models, media).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export FACEFLOW_CACHE_DIR ?= $(CURDIR)/.cache/faceflow
DEMO_DIR := $(CURDIR)/data/demo
SAMPLE_DIR := $(CURDIR)/data/sample
BUF := .cache/tools/node_modules/.bin/buf

.PHONY: setup protos models media sample demo test test-fast lint typecheck buf-lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Generated code first: the editable install maps the `faceflow` package only if it exists.
gen/python/faceflow/v1/.built: $(wildcard protos/faceflow/v1/*.proto) | $(VENV)/bin/python
	$(PY) -m pip install --quiet --disable-pip-version-check 'grpcio-tools==1.81.*' 'mypy-protobuf>=3.6' 'protobuf>=6.33,<7'
	rm -rf gen/python && mkdir -p gen/python
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iprotos \
	  --python_out=gen/python --grpc_python_out=gen/python \
	  --mypy_out=gen/python --mypy_grpc_out=gen/python protos/faceflow/v1/*.proto
	touch gen/python/faceflow/__init__.py gen/python/faceflow/v1/__init__.py $@

$(VENV)/.installed: pyproject.toml gen/python/faceflow/v1/.built
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

protos: setup

models: setup
	$(PY) -m services.common.assets models --cache $(FACEFLOW_CACHE_DIR)

media: setup
	$(PY) -m services.common.assets media --cache $(FACEFLOW_CACHE_DIR)

sample: models media
	$(PY) -m services.evaluation.sample_episode --media $(FACEFLOW_CACHE_DIR)/media --out $(SAMPLE_DIR)

# The main job on a real episode: build the sample, enrol the three enrollable people from images
# that are not in it, run it through the five services, print the screen time and the evaluation.
demo: sample
	rm -rf $(DEMO_DIR)
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) facebank add --name "Barack Obama" $(SAMPLE_DIR)/enrol/obama/*
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) facebank add --name "Pexels woman" $(SAMPLE_DIR)/enrol/pexels_woman/*
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) facebank add --name "Single-face clip man" $(SAMPLE_DIR)/enrol/single_face_man/*
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) run $(SAMPLE_DIR)/episode.mp4 --episode sample
	$(VENV)/bin/faceflow --data-root $(DEMO_DIR) eval sample --ground-truth $(SAMPLE_DIR)/ground_truth.json

test: models media lint typecheck buf-lint
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not e2e"

$(BUF):
	mkdir -p .cache/tools && cd .cache/tools && npm install --silent --no-audit --no-fund @bufbuild/buf

buf-lint: $(BUF)
	cd protos && ../$(BUF) lint

lint: setup
	$(VENV)/bin/ruff check services tests

typecheck: setup
	$(VENV)/bin/mypy services

clean:
	rm -rf gen .pytest_cache .mypy_cache .ruff_cache data
