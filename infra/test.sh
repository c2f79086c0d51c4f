#!/usr/bin/env bash
# The test command (the README's second command). Installs what the suite needs when it can, then runs
# formatting and lint checks and the whole test suite against real PostgreSQL servers that
# the tests start themselves. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

have_postgres() {
  if [ -n "${TENANCY_PG_BIN_DIR:-}" ]; then
    [ -x "$TENANCY_PG_BIN_DIR/postgres" ] && [ -x "$TENANCY_PG_BIN_DIR/initdb" ]
  else
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null
  fi
}

if ! have_postgres; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing the PostgreSQL server binaries (apt-get install postgresql)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "test.sh: PostgreSQL server binaries not found. Install them (Debian: sudo apt-get install postgresql)" >&2
    echo "         or set TENANCY_PG_BIN_DIR to the directory holding postgres and initdb." >&2
    exit 1
  fi
fi
# The portal's browser test drives Debian's Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test.sh: installing Chromium and its WebDriver (apt-get install chromium chromium-driver)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "test.sh: chromium and chromedriver not found. Install them (Debian: sudo apt-get install chromium chromium-driver)" >&2
    exit 1
  fi
fi
if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
  echo "test.sh: running as root, and PostgreSQL refuses root: creating the 'postgres' system user" >&2
  useradd --system --home-dir /var/lib/postgresql --shell /bin/false postgres
fi

cargo fmt --all -- --check
# Lints. Clippy runs as the compiler of the workspace's own crates while the build below
# compiles them, exactly as `cargo clippy` runs it (its driver, its arguments), so every
# dependency is compiled once instead of once for a check-only lint pass and again for
# the tests: that pass took a third of the whole run. Warnings are errors.
clippy_driver="$(rustc --print sysroot)/bin/clippy-driver"
if [ ! -x "$clippy_driver" ]; then
  echo "test.sh: clippy is not installed: rustup component add clippy" >&2
  exit 1
fi
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
# The crate graph: the operations library (provisioner) knows no HTTP framework, and
# tenantctl needs the services only for `dev`.
if cargo tree -p provisioner --locked -e normal | grep -E '(axum|tower-http|tenancy-http) v'; then
  echo "test.sh: provisioner (the operations library) must not depend on an HTTP framework" >&2
  exit 1
fi
if cargo tree -p tenantctl --no-default-features --locked -e normal | grep -E '(control-plane|tenant-router|axum) v'; then
  echo "test.sh: tenantctl without its dev feature must not depend on the services" >&2
  exit 1
fi
# Only tenantctl's `dev` module (compiled with the feature) may name the services' crates:
# with the tree above, this keeps them behind the feature. (Compiling tenantctl without the
# feature would resolve the dependencies' features apart and compile them all again: three
# minutes.)
if grep -rnE '\b(control_plane|tenant_router|tenancy_http|tenancy_infra)\b' tenantctl/src --include='*.rs' \
  | grep -v '^tenantctl/src/dev/' | grep -v 'cfg(feature = "dev")'; then
  echo "test.sh: tenantctl uses a service outside its dev module" >&2
  exit 1
fi
# Every target (binaries, tests, benchmarks), linted and built in one go: one feature
# resolution (dev-dependencies included), the one `cargo test` and the harness's own
# `cargo build` use too, so nothing is compiled twice. The end-to-end tests run the real
# binaries.
cargo build --workspace --all-targets --locked
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole suite (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "suite: %d passed, %d failed\n", p, f }' "$log"
