# One entry point for everything. Each target creates the virtual
# environment it needs, so a fresh clone needs nothing installed by hand.
#
#   make demo         the main job: an embedded SMTP server on 127.0.0.1, real
#                     messages through the library and the Django app, statuses shown
#   make test         the whole suite: lint, types, tests on the default
#                     environment, then the Django matrix (6.0 and 6.1 on Python 3.13)
#   make test-quick   lint, types and tests on the default environment only
#   make bench        the benchmark suite (writes docs/benchmarks.md)
#   make docs         the documentation site (mkdocs build --strict into site/)
#   make screenshots  the example project in headless Chromium: docs/img/*.png anew

SHELL := /bin/bash
PYTHON ?= python3
# pyenv's python3.13 shim refuses to run unless asked for, so prefer the real binary.
PY313 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) python3.13)
VENV ?= .venv
PIP_FLAGS := --disable-pip-version-check --quiet
comma := ,

.PHONY: demo test test-quick test-matrix lint bench docs screenshots venv services clean

# $(call make_venv,DIR,PYTHON,EXTRA-REQUIREMENT)
define make_venv
	@if [ ! -x $(1)/bin/python ] || [ ! -f $(1)/.installed ] || [ pyproject.toml -nt $(1)/.installed ]; then \
		echo "==> creating $(1) with $(2) $(3)"; \
		$(2) -m venv $(1) && \
		$(1)/bin/pip install $(PIP_FLAGS) --upgrade pip && \
		$(1)/bin/pip install $(PIP_FLAGS) -e '.[dev,smtp,django]' $(3) && \
		touch $(1)/.installed; \
	fi
endef

# Servers some tests start on 127.0.0.1 (Redis for the Celery outbox engine,
# PostgreSQL for the outbox's worker-concurrency tests, Postfix for the DSN
# tests, configured by the tests themselves; Chromium and its driver for the
# example project's browser test), from Debian's packages,
# installed when missing (as root; elsewhere those tests say why they skip).
SERVICE_PACKAGES := redis-server:redis-server postgresql:initdb postfix:postfix dovecot-core:dovecot dovecot-imapd:imap-login \
	chromium:chromium chromium-driver:chromedriver opendkim-tools:opendkim-testmsg
services:
	@missing=""; \
	for pair in $(SERVICE_PACKAGES); do \
		pkg=$${pair%%:*}; bin=$${pair#*:}; \
		command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || [ -x /usr/lib/dovecot/$$bin ] || ls /usr/lib/postgresql/*/bin/$$bin >/dev/null 2>&1 \
			|| missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "==> installing$$missing"; \
			echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else \
			echo "==> not installed:$$missing (the tests that need them say so)"; \
		fi; \
	fi

venv:
	$(call make_venv,$(VENV),$(PYTHON),'django>=5.2$(comma)<5.3')

demo: venv
	$(VENV)/bin/python -m demo

lint: venv
	$(VENV)/bin/ruff check amsdal_mail django_amsdal_mail tests demo benchmarks example_project
	$(VENV)/bin/ruff format --check amsdal_mail django_amsdal_mail tests demo benchmarks example_project
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests/type_usage.py

test-quick: lint
	$(VENV)/bin/python -m pytest

test-matrix:
	$(call make_venv,.venv-dj60,$(PY313),'django>=6.0$(comma)<6.1')
	.venv-dj60/bin/python -m pytest
	$(call make_venv,.venv-dj61,$(PY313),'django>=6.1$(comma)<6.2')
	.venv-dj61/bin/python -m pytest

test: services test-quick test-matrix

bench: venv
	$(VENV)/bin/python -m benchmarks

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/python -m mkdocs build --strict

# The browser test saves its screenshots into docs/img/ only when asked.
screenshots: services venv
	AMSDAL_DOCS_SCREENSHOTS=1 $(VENV)/bin/python -m pytest -q tests/docs/test_browser.py

clean:
	rm -rf .venv .venv-dj60 .venv-dj61 .pytest_cache .mypy_cache .ruff_cache *.egg-info site
