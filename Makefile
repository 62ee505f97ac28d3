# One place for automation: the same targets run locally and in .ci/run.
CARGO ?= cargo
WASM_DIR := functions/target/wasm32-wasip2/release

.PHONY: setup build functions lint fmt test sdk-test chart-check ui-test image demo bench-runtime ci clean

setup:
	@scripts/setup.sh

## The guests: SDK, example processors and misbehaving fixtures (wasm32-wasip2),
## and the JavaScript processors (componentize-js, installed into functions/js).
functions: setup
	cd functions && $(CARGO) build --release --target wasm32-wasip2
	scripts/js-guests.sh

build: functions
	$(CARGO) build --release --workspace

fmt:
	$(CARGO) fmt --all
	cd functions && $(CARGO) fmt --all

lint: setup
	$(CARGO) fmt --all -- --check
	cd functions && $(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	cd functions && $(CARGO) clippy --release --target wasm32-wasip2 -- -D warnings

## Every test: lint, guests, the workspace (release: the sandbox tests run
## real compiled guests), the SDK's own native tests, the dashboard in a
## browser, the API fuzzer and the image's smoke test.
test: lint functions chart-check
	$(CARGO) build --release --workspace --bins
	$(CARGO) test --release --workspace
	cd functions && $(CARGO) test --workspace
	$(MAKE) sdk-test
	scripts/ui-test.sh
	scripts/api-fuzz.sh
	scripts/image.sh --smoke

## Renders the Helm chart with every values file and validates it offline
## (kubernetes-validate --strict, the KEDA CRD, yamllint); broken values must fail.
chart-check:
	scripts/chart-check.sh

## The dashboard in headless Chromium against a real `eddy up` (installs
## chromium and playwright-core when missing); saves docs/dashboard.png.
ui-test: build
	scripts/ui-test.sh

## The static (musl) eddy and the FROM scratch image eddy:<version> (podman or
## docker; podman is installed when neither works).
image:
	scripts/image.sh

## Brings Eddy up locally and shows it working.
demo: build
	scripts/demo.sh

## The Python and JavaScript SDKs' own tests (their conversions, on the
## local host), then their examples built with `eddy build` (componentize-py,
## componentize-js) and run by `eddy test` in the workers' sandbox.
SDK_EXAMPLES := functions/sdk-python/examples/wordcount functions/sdk-python/examples/fanout \
	functions/sdk-js/examples/wordcount functions/sdk-js/examples/fanout
sdk-test:
	python3 -m unittest discover -s functions/sdk-python/tests
	cd functions/sdk-js && node --test test/
	for p in $(SDK_EXAMPLES); do (cd $$p && $(CURDIR)/target/release/eddy build && $(CURDIR)/target/release/eddy test) || exit 1; done

bench-runtime: functions
	$(CARGO) bench -p eddy-runtime --bench invoke

ci: test

clean:
	$(CARGO) clean
	cd functions && $(CARGO) clean
