# The deployment guide's `make build-base`, plus the project's test and benchmark entry points.
CARGO ?= cargo
IMAGE ?= minion-base:latest

.PHONY: test build build-base build-app demo bench-stack bench-local bench-minion

# The whole test suite (unit tests and the one integration-test binary).
test:
	$(CARGO) test --locked

build:
	$(CARGO) build --locked

# Issue 4: prompt-prefix reuse of a scripted 20-turn agent run.
bench-minion:
	$(CARGO) test --locked --test it bench_minion -- --ignored --nocapture
