# `make build-base` (the minion image), plus the project's test and benchmark entry points.
CARGO ?= cargo
IMAGE ?= minion-base:latest
# The release binary the offline image and the image benchmark ship (built once).
RELEASE_BIN ?= $(or $(CARGO_TARGET_DIR),target)/release/lackey

.PHONY: test install build build-release build-base build-base-offline build-app bench-image demo bench-stack bench-local bench-minion bench-cloud bench-e2e bench-doctor bench-report bench-fleet

# The main job: build the minion image, then a stub run on a demo repository.
demo:
	scripts/demo.sh

# The whole test suite (unit tests and the one integration-test binary), after
# installing what is missing; ends with the skipped-test count and a leftover check.
test:
	scripts/install-deps.sh
	CARGO=$(CARGO) scripts/test.sh

build:
	$(CARGO) build --locked

# `lackey` on the PATH (into ~/.cargo/bin).
install:
	$(CARGO) install --locked --path .

# `make build-base`: minion-base:latest, compiled in Docker from
# this tree (docker/Dockerfile). Where nothing can be pulled: `make build-base-offline`.
build-base: build
	$(CARGO) run --locked --quiet -- image build --from-source --tag $(IMAGE)

build-release:
	$(CARGO) build --locked --release

# The image gets a release, stripped lackey (the debug one is several times larger).
build-base-offline: build-release
	scripts/build-offline-base.sh
	$(RELEASE_BIN) image build --offline $(if $(LACKEY_OFFLINE_BASE),--base $(LACKEY_OFFLINE_BASE)) --tag $(IMAGE)

# A project image from a repository's .lackey/Dockerfile: make build-app REPO=path
build-app: build
	$(CARGO) run --locked --quiet -- image build --project --repo $(or $(REPO),.)

# Compressed size and layers of minion-base (what Fargate pulls), from bookworm-slim and offline.
bench-image: build-release
	docker/bench-image.sh $(RELEASE_BIN)

# Issue 4: prompt-prefix reuse of a scripted 20-turn agent run.
bench-minion:
	$(CARGO) test --locked --test it bench_minion -- --ignored --nocapture

# Issue 5: a stub run's wall time against a bare `docker run` of the same image (with
# the default `proxy-only` network and with `open`); issue 10: the latency the credential
# proxy adds to one LLM request (median, p99).
bench-local:
	$(CARGO) test --locked --test it bench_local -- --ignored --nocapture

# Issues 3 and 11: wall time, request count and critical-path depth of up, plan,
# no-op up, doctor and down against moto, every AWS call LATENCY_MS longer
# (`make bench-stack LATENCY_MS=0` for moto's own speed).
LATENCY_MS ?= 100
bench-stack:
	LATENCY_MS=$(LATENCY_MS) $(CARGO) test --locked --test it bench_stack -- --ignored --nocapture

# Issues 6 and 11: a stub cloud run at LATENCY_MS per AWS call: command → RunTask sent,
# first sight of STOPPED → summary printed, each with its critical path, lackey's CPU
# and the load average, with the credential sidecar and with a hand-made one-container
# task definition; DescribeTasks per poll tick with 20 runs in flight; the latency the
# sidecar adds to an LLM request.
bench-cloud:
	LATENCY_MS=$(LATENCY_MS) $(CARGO) test --locked --test it latency::bench_cloud_latency -- --ignored --nocapture
	$(CARGO) test --locked --test it bench::bench_cloud_proxied_llm_latency -- --ignored --nocapture

# Issue 11: end to end from an empty account at LATENCY_MS per AWS call: init, up, two
# secret puts and a stub cloud run with --pr; each step's wall time, CPU and critical
# path, and the total less the task's own life.
bench-e2e:
	LATENCY_MS=$(LATENCY_MS) $(CARGO) test --locked --test it latency::bench_e2e_from_empty_account -- --ignored --nocapture

# Issue 7: wall time of a full `lackey doctor` on a healthy stack.
bench-doctor:
	$(CARGO) test --locked --test it bench_doctor -- --ignored --nocapture

# Issue 16: time and size of a run's report.html for a 20-turn run and a 5,000-line diff.
bench-report:
	$(CARGO) test --locked --test it bench_report -- --ignored --nocapture

# 200 fleet runs in flight against moto, watched on a terminal: launch time, AWS calls per tick, CLI CPU and memory.
bench-fleet:
	$(CARGO) test --locked --test it bench_fleet -- --ignored --nocapture
