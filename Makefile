# pidlab: `make run` boots the kernel under QEMU, `make test` runs every test.
# Both install what they need first (`make setup`).

TOOLCHAIN := $(shell sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
COMPONENTS := rust-src llvm-tools-preview rustfmt clippy
TARGET := x86_64-unknown-none
QEMU := qemu-system-x86_64
QEMU_PACKAGE := qemu-system-x86
# Extra arguments for `make run`, e.g. make run ARGS="--smp 2 bench=none"
ARGS ?=

# The kernel's build is pinned in Cargo.toml (one codegen unit, not
# incremental); CARGO_INCREMENTAL in the environment would override that.
unexport CARGO_INCREMENTAL

.PHONY: setup toolchain qemu run bench test test-loom layers clippy fmt fmt-check

setup: toolchain qemu

# Installs the pinned nightly with its components and the bare-metal target,
# unless it is already complete (RUSTUP_AUTO_INSTALL=0 on our machines means
# cargo will not do this by itself).
toolchain:
	@missing=; \
	rustup run $(TOOLCHAIN) rustc --version >/dev/null 2>&1 || missing=toolchain; \
	installed="$$(rustup component list --toolchain $(TOOLCHAIN) --installed 2>/dev/null)"; \
	for c in rust-src llvm-tools rustfmt clippy rust-std-$(TARGET); do \
	  echo "$$installed" | grep -q "^$$c" || missing="$$missing $$c"; \
	done; \
	if [ -z "$$missing" ]; then \
	  echo "setup: toolchain $(TOOLCHAIN) is installed"; \
	else \
	  echo "setup: installing toolchain $(TOOLCHAIN) (missing:$$missing)"; \
	  rustup toolchain install $(TOOLCHAIN) --profile minimal \
	    $(foreach c,$(COMPONENTS),--component $(c)) --target $(TARGET); \
	fi

# Installs QEMU with apt-get when it is missing and we are root (or have
# password-less sudo); otherwise says what to install.
qemu:
	@if command -v $(QEMU) >/dev/null 2>&1; then \
	  echo "setup: $$($(QEMU) --version | head -n 1)"; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=sudo; \
	  else echo "setup: $(QEMU) is missing: install the $(QEMU_PACKAGE) package (apt-get install $(QEMU_PACKAGE))" >&2; exit 1; fi; \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "setup: $(QEMU) is missing and there is no apt-get: install QEMU for x86_64" >&2; exit 1; fi; \
	  echo "setup: installing $(QEMU_PACKAGE) with apt-get"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -q --no-install-recommends $(QEMU_PACKAGE) \
	    || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends $(QEMU_PACKAGE); } \
	    || exit 1; \
	  command -v $(QEMU) >/dev/null || { echo "setup: $(QEMU) still missing after install" >&2; exit 1; }; \
	fi

run: setup
	cargo run -- $(ARGS)

# The threadspawn benchmark at --smp 8 and --smp 2, saved with a plot under
# bench/results/<timestamp>/ (BENCH_ARGS="ns_depth=3" etc. to vary it).
bench: setup
	scripts/bench.sh

# Host unit tests (kernel library, runner) and the in-QEMU integration tests,
# then the loom models of the locks.
test: setup
	cargo test
	cargo test -p pidlab-plot
	$(MAKE) test-loom

# The kernel's rooms in layers: fails when a `crate::` path points up a
# layer or closes a circle between rooms (also part of `cargo test`).
layers: toolchain
	cargo test -p pidlab-kernel --test layers

# loom model checks of the lock protocols, the lock-free map and RCU (every
# test whose path has loom_models, e.g. kernel/src/sync/*/loom_models.rs):
# built with --cfg loom in their own target dir so the normal build is not
# invalidated, and in release mode (loom explores thousands of interleavings).
test-loom: toolchain
	RUSTFLAGS="--cfg loom" cargo test -p pidlab-kernel --lib --release \
	  --target-dir target/loom -- loom_models

# Lints the host build and the bare-metal build (arch code only exists there).
clippy: toolchain
	cargo clippy --all-targets -- -D warnings
	cargo clippy -p pidlab-plot --all-targets -- -D warnings
	cargo clippy -p pidlab-kernel -p pidlab-kernel-bin --target $(TARGET) -- -D warnings

fmt:
	cargo fmt --all

fmt-check: toolchain
	cargo fmt --all -- --check
