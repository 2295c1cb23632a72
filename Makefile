# gds-prometheus: every target is one line over cargo or a script in scripts/.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo test lint unit bench build package clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

demo: ## Run the whole stack on embedded defaults, walk a tenant's story, stay up (Ctrl-C stops it)
	@scripts/demo.sh

test: ## Everything CI runs: install test deps (moto, PostgreSQL, Prometheus, nginx), fmt check, clippy, all tests
	@scripts/install-test-deps.sh
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	cargo build --workspace --bins --examples --locked
	scripts/s3-test-server.sh scripts/pg-test-server.sh cargo test --workspace --locked

lint: ## Only formatting and clippy
	cargo fmt --all -- --check && cargo clippy --workspace --all-targets --locked -- -D warnings

unit: ## Only the tests that need no servers (no moto, PostgreSQL, nginx, Prometheus): every crate's own, and the integration modules that start only our binaries
	cargo build --workspace --bins --locked
	cargo test --workspace --exclude gds-tests --locked
	cargo test -p gds-tests --test integration --locked -- broker::config:: cf_client:: manifests::

bench: ## Benchmarks that print figures (see docs/BENCHMARKS.md)
	@scripts/install-test-deps.sh
	cargo build --release --workspace --bins --locked
	scripts/s3-test-server.sh scripts/pg-test-server.sh cargo test --release -p gds-tests --test integration --locked -- --ignored --nocapture --test-threads 1 bench_

build: ## Build every binary (debug)
	cargo build --workspace --bins --locked

package: ## Release binaries staged for cf push (target/cf/; see README, Deploying)
	@scripts/cf-package.sh

clean: ## Remove build output and the test virtualenv
	cargo clean && rm -rf .venv
