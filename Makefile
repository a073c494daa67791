# The two commands of the README:
#   make sandbox   provision a local systemd container with site.yml and sign it off
#   make test      lint, unit tests and every molecule scenario
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
STATE := $(CURDIR)/.state
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_HOME := $(STATE)/ansible
export ANSIBLE_LOCAL_TEMP := $(STATE)/ansible/tmp
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0
SANDBOX_INVENTORY := sandbox/inventory.yml
# make molecule runs these lanes side by side (each lane's scenarios one after
# the other; tools/run_scenarios.py).  One lane: MOLECULE_LANES=default
MOLECULE_LANES ?= reliability,migrations default,security

.PHONY: help venv host test-deps image sandbox sandbox-verify screenshots sandbox-destroy test check lint docs docs-check node-deps tls-scan-deps unit molecule bench-prep bench bench-pitr bench-scale bench-overhead bench-clean clean

help:
	@echo "make sandbox          provision the local container chatflow-sandbox and print the sign-off"
	@echo "make test             lint + unit tests + molecule scenarios in lanes: $(MOLECULE_LANES)"
	@echo "make check            lint + unit and integration tests (no Docker)"
	@echo "make sandbox-verify   run the testinfra suite against the sandbox"
	@echo "make sandbox-destroy  remove the sandbox container"
	@echo "make bench            the chat workload on the sandbox: ours vs the seed's design, pooling, Redis"
	@echo "make bench-pitr       pgBackRest on the sandbox: backup and restore at the seed's size and at 1M messages"
	@echo "make bench-scale      pgbench at 1M, 3M and 10M messages: ours vs the seed's design, growth, targets"
	@echo "make bench-overhead   the pgbench mix with the monitoring (statistics, exporters) on against off"
	@echo "make screenshots      the pgBadger report and Prometheus' graph of the sandbox, as Chromium renders them"
	@echo "make docs             regenerate the ER diagram (docs/schema) and the roles' variable references"
	@echo "make lint | docs-check | unit | molecule | image | clean"

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

host:
	python3 tools/hostctl.py host-deps
	python3 tools/hostctl.py docker-up

# What only the tests and the generated docs need on this machine.
test-deps:
	python3 tools/hostctl.py test-deps

image: host
	python3 tools/hostctl.py image

sandbox: venv image
	python3 tools/hostctl.py sandbox-up
	ansible-playbook site.yml -i $(SANDBOX_INVENTORY)
	ansible-playbook playbooks/signoff.yml -i $(SANDBOX_INVENTORY)

# The molecule scenario's testinfra suite, against the sandbox.
sandbox-verify: venv node-deps tls-scan-deps
	CHATFLOW_TEST_HOST=chatflow-sandbox pytest -q molecule/shared

# The monitoring pages as a person sees them, rendered by headless Chromium
# from the sandbox (the test that checks them writes them to docs/operations/).
screenshots: venv test-deps
	CHATFLOW_TEST_HOST=chatflow-sandbox CHATFLOW_SCREENSHOT_DIR=$(CURDIR)/docs/operations \
		pytest -q molecule/shared/test_monitoring.py -k what_a_person_sees

sandbox-destroy:
	python3 tools/hostctl.py sandbox-down

lint: venv
	detect-secrets-hook $$(git ls-files)
	yamllint --strict .
	ruff check .
	ruff format --check .
	ansible-playbook --syntax-check site.yml -i inventory
	ansible-playbook --syntax-check playbooks/signoff.yml -i $(SANDBOX_INVENTORY)
	ansible-playbook --syntax-check playbooks/migrate.yml -i inventory
	ansible-playbook --syntax-check playbooks/backup.yml -i inventory
	ansible-playbook --syntax-check playbooks/restore.yml -i inventory
	python3 tools/gen_schema.py --check
	ansible-lint

# Generated documentation: the ER diagram, drawn from the catalog of a throwaway
# PostgreSQL 15 built by the migrations, and each role's variables table,
# rendered by aar-doc from meta/argument_specs.yml.  docs-check (in make test)
# fails while either is stale.
docs: venv test-deps node-deps
	$(BIN)/python tools/gen_erd.py
	$(BIN)/python tools/gen_types.py
	$(BIN)/python tools/gen_role_docs.py

docs-check: venv test-deps node-deps
	$(BIN)/python tools/gen_erd.py --check
	$(BIN)/python tools/gen_types.py --check
	$(BIN)/python tools/gen_role_docs.py --check

# The Node.js clients the connection guide's snippets use (its test runs them).
NODE_DIR := $(STATE)/node
node-deps: $(NODE_DIR)/.installed
$(NODE_DIR)/.installed: tests/node/package.json tests/node/package-lock.json
	mkdir -p $(NODE_DIR)
	cp tests/node/package.json tests/node/package-lock.json $(NODE_DIR)/
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The TLS scanner of the security tests (sslyze speaks PostgreSQL's STARTTLS),
# in a virtualenv of its own: it pins a cryptography older than Ansible's.
SSLYZE_DIR := $(STATE)/sslyze
tls-scan-deps: $(SSLYZE_DIR)/.installed
$(SSLYZE_DIR)/.installed: requirements-tls-scan.txt
	python3 -m venv $(SSLYZE_DIR)
	$(SSLYZE_DIR)/bin/pip install --quiet --disable-pip-version-check -r requirements-tls-scan.txt
	@touch $@

# Unit tests of the pure parts, then the module against a real PostgreSQL 15
# started in a temporary directory (tests/integration).
unit: venv test-deps node-deps
	pytest -q tests/unit tests/integration

molecule: venv image node-deps tls-scan-deps test-deps
	$(BIN)/python tools/run_scenarios.py $(MOLECULE_LANES)

# The benchmark runs on the sandbox (provisioned first when it is not yet):
# two PostgreSQL clusters are created in it for the run and dropped after;
# the sandbox's own database is only read.  BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--messages 200000 --seconds 10"
BENCH_ARGS ?=
# What every benchmark needs: its Python packages and a provisioned sandbox.
bench-prep: venv image
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	python3 tools/hostctl.py sandbox-up
	docker exec chatflow-sandbox test -f /home/agenti/my-mvp-slack/.env.database || $(MAKE) sandbox

bench: bench-prep
	$(BIN)/python -m tools.bench.run $(BENCH_ARGS)

# pgBackRest at the seed's size and with 1M messages: backup and restore times, sizes.
bench-pitr: bench-prep
	$(BIN)/python -m tools.bench.pitr $(BENCH_ARGS)

# Cost growth to 10M messages, ours against the seed's design, with pgbench
# (BENCH_ARGS="--sizes 1000000,3000000 --docs"; 10M needs about 20 GB of disk).
bench-scale: bench-prep
	$(BIN)/python -m tools.bench.scale $(BENCH_ARGS)

# What the monitoring costs: the pgbench mix with statistics and exporters on against off.
bench-overhead: bench-prep
	$(BIN)/python -m tools.bench.overhead $(BENCH_ARGS)

# Drop the clusters a `make bench BENCH_ARGS=--keep` left in the sandbox.
bench-clean:
	docker exec chatflow-sandbox bash -c 'for c in bench_ours bench_seed; do pg_dropcluster --stop 15 $$c 2>/dev/null || true; done'

# Lint and the tests that need no container: quick, before a commit.
check: lint unit

test: lint docs-check unit molecule

clean: sandbox-destroy
	rm -rf $(VENV) $(STATE)
