# billsync developer commands. `make help` lists them.
#
# Scripts in deploy/ install and start what the commands need (NATS with JetStream,
# PostgreSQL, Chromium) on Debian/Ubuntu; they do nothing when it is already there.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
# Seconds each fuzz target runs: `make fuzz`, and the short run of each in `make test`.
FUZZ_SECONDS ?= 600
FUZZ_SHORT_SECONDS ?= 20

.DEFAULT_GOAL := help

.PHONY: help run observe test lint check-deploy fmt build k8s clean-run services shellcheck fuzz chaos chaos-short bench-ingest bench-activecampaign bench-activecampaign-backfill bench-zoho bench-pipedrive bench-throughput soak

help: ## List the targets
	@awk 'BEGIN { FS = ":.*## " } /^[a-zA-Z0-9_-]+:.*## / { printf "  make %-12s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

run: ## Run the local demo: NATS, Postgres, sandbox, billsync up, demo webhooks (Ctrl-C stops)
	deploy/run-demo.sh

services: ## Install/start NATS (JetStream) and PostgreSQL if they are not running
	deploy/ensure-nats.sh
	deploy/ensure-postgres.sh

test: services ## Run every test, the short chaos schedule (root), then each fuzz target for FUZZ_SHORT_SECONDS (ensures NATS, Postgres, Chromium, Prometheus, schemathesis, cargo-fuzz first)
	deploy/ensure-chromium.sh
	deploy/ensure-check-tools.sh >/dev/null
	deploy/ensure-fuzz.sh
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		echo "$(CARGO) nextest run --workspace"; \
		$(CARGO) nextest run --workspace; \
	else \
		echo "$(CARGO) test --workspace --all-targets  (install cargo-nextest for faster runs)"; \
		$(CARGO) test --workspace --all-targets; \
	fi
	deploy/ensure-netns.sh
	$(CARGO) run --quiet -p billsync-bench --bin chaos -- --short
	fuzz/run.sh $(FUZZ_SHORT_SECONDS)

fuzz: ## Run each fuzz target for FUZZ_SECONDS (default 600) from its seed corpus (fuzz/)
	deploy/ensure-fuzz.sh
	fuzz/run.sh $(FUZZ_SECONDS)

lint: check-deploy ## Check formatting, clippy with warnings as errors, and the deployment files
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check-deploy: ## Validate k8s/ against the Kubernetes API schemas, unit-test the alerts (promtool)
	deploy/check-deploy.sh

fmt: ## Format all Rust code
	$(CARGO) fmt --all

build: ## Build the workspace (debug)
	$(CARGO) build --workspace --all-targets

bench-activecampaign: services ## Benchmark Stripe → ActiveCampaign through the whole pipeline at AC's 5 req/s (BENCH_ARGS=--help)
	$(CARGO) run --release --quiet -p billsync-bench --bin bench-activecampaign -- $(BENCH_ARGS)

bench-activecampaign-backfill: services ## Benchmark a Chargebee "sync all" of 10,000 customers into ActiveCampaign at 5 req/s: calls per customer (goal <= 0.1), time against the single-record path, state field by field (BENCH_ARGS=--help)
	$(CARGO) run --release --quiet -p billsync-bench --bin bench-activecampaign-backfill -- $(BENCH_ARGS)

bench-zoho: services ## Benchmark Stripe → Zoho CRM through the whole pipeline: API calls per change, credits, time (BENCH_ARGS=--help)
	$(CARGO) run --release --quiet -p billsync-bench --bin bench-zoho -- $(BENCH_ARGS)

bench-pipedrive: services ## Benchmark Stripe → Pipedrive through the whole pipeline: tokens against the minimum, time against the burst and budget bounds (BENCH_ARGS=--help)
	$(CARGO) run --release --quiet -p billsync-bench --bin bench-pipedrive -- $(BENCH_ARGS)

bench-throughput: services ## Worker throughput with the CRM unthrottled: events/s against the 500/s goal, CRM calls, NATS messages and CPU per event (billsync as processes; BENCH_ARGS=--help)
	$(CARGO) run --release --quiet -p billsync-bench --bin bench-throughput -- $(BENCH_ARGS)

soak: services ## RSS of ingest, errors and the AC worker through 1,000,000 events: start, steady, end, each under 64 MiB and flat (SOAK_ARGS=--help)
	$(CARGO) run --release --quiet -p billsync-bench --bin soak -- $(SOAK_ARGS)

chaos: services ## Faults on a 3-node JetStream cluster, every service ×2: nothing lost, doubled or reordered (root; CHAOS_ARGS=--help)
	deploy/ensure-netns.sh
	$(CARGO) run --release --quiet -p billsync-bench --bin chaos -- $(CHAOS_ARGS)

chaos-short: services ## The chaos schedule with 3 + 3 customers per fault and 8 s outages (debug build; root)
	deploy/ensure-netns.sh
	$(CARGO) run --quiet -p billsync-bench --bin chaos -- --short $(CHAOS_ARGS)

bench-ingest: services ## Benchmark Stripe webhooks → JetStream against raw JetStream (release build; BENCH_ARGS=--help)
	$(CARGO) run --release --quiet -p billsync-bench --bin bench-ingest -- $(BENCH_ARGS)

observe: ## Prometheus on :9090 for the running demo, every dashboard panel recorded (run beside make run)
	deploy/observe.sh

k8s: ## Render the Kubernetes manifests (kubectl kustomize k8s)
	@command -v kubectl >/dev/null 2>&1 || { echo "kubectl not found: see https://kubernetes.io/docs/tasks/tools/" >&2; exit 1; }
	kubectl kustomize k8s

shellcheck: ## Check the shell scripts (needs shellcheck)
	shellcheck -x deploy/*.sh fuzz/run.sh .ci/run

clean-run: ## Stop a demo left behind and delete .run/ (its logs)
	deploy/stop-demo.sh
	rm -rf .run
