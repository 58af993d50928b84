#!/usr/bin/env bash
# Runs kiln's whole test suite against its real components: a throwaway PostgreSQL cluster and the
# stock buildbot-worker from PyPI in a virtualenv. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
# The suite is strict under CI: components it needs (PostgreSQL, buildbot-worker) must be present.
export CI=1
state=${KILN_TEST_STATE:-$PWD/target/test-env}
mkdir -p "$state"

venv=$state/venv
if [ ! -x "$venv/bin/buildbot-worker" ]; then
  echo "setting up buildbot-worker in $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet 'buildbot-worker==4.3.0'
fi
export KILN_TEST_BUILDBOT_WORKER=$venv/bin/buildbot-worker
# A stock worker's --use-tls needs Twisted's TLS extras, which buildbot-worker does not require.
if ! "$venv/bin/python" -c 'import OpenSSL, service_identity' >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet 'pyOpenSSL==26.4.0' 'service-identity==26.1.0'
fi
# The mail tests deliver to aiosmtpd, a real SMTP server, run by the same virtualenv's Python.
if ! "$venv/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet 'aiosmtpd==1.4.6'
fi
export KILN_TEST_PYTHON=$venv/bin/python
# schemathesis drives every endpoint of the REST API's OpenAPI description with generated requests.
if [ ! -x "$venv/bin/schemathesis" ]; then
  "$venv/bin/pip" install --quiet 'schemathesis==4.32.5'
fi
export KILN_TEST_SCHEMATHESIS=$venv/bin/schemathesis
# The IRC bot is tested on a real IRC server.
KILN_TEST_NGIRCD=$(command -v ngircd || echo /usr/sbin/ngircd)
export KILN_TEST_NGIRCD

# Buildbot's own front-end and its view plugins, from PyPI, which kiln serves when configured to;
# installed without their dependency on the Buildbot master, which kiln replaces.
bbwww=$state/buildbot-www
if [ ! -d "$bbwww/buildbot_www" ]; then
  echo "setting up buildbot-www in $bbwww"
  "$venv/bin/pip" install --quiet --no-deps --target "$bbwww" \
    'buildbot-www==4.3.0' 'buildbot-waterfall-view==4.3.0' 'buildbot-console-view==4.3.0' 'buildbot-grid-view==4.3.0'
fi
export KILN_TEST_BUILDBOT_WWW=$bbwww

# Playwright drives Debian's Chromium for the page tests; only its driver library is installed,
# never a browser download.
browser=$state/browser
if [ ! -d "$browser/node_modules/playwright-core" ]; then
  echo "setting up playwright-core in $browser"
  mkdir -p "$browser"
  npm install --prefix "$browser" --no-audit --no-fund --silent 'playwright-core@1.64.1'
fi
export KILN_TEST_NODE_MODULES=$browser/node_modules
KILN_TEST_CHROMIUM=$(command -v chromium)
export KILN_TEST_CHROMIUM

# The cluster lives under /tmp so that the postgres user can reach it wherever the checkout is.
KILN_TEST_POSTGRES_URL=$(.ci/postgres.sh "${KILN_TEST_PG_DIR:-/tmp/kiln-test-pg}" "${KILN_TEST_PG_PORT:-55433}")
export KILN_TEST_POSTGRES_URL

# Formatting and lints are part of the suite: both fail the run.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# Tests run the programs themselves (`kiln`, `kiln-worker`), and `cargo test` builds a package's
# programs only for that package's own tests, so every program is built first.
cargo build --workspace --bins --locked

log=$state/cargo-test.log
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "kiln: %d passed, %d failed\n", p, f }' "$log"

# The decoders of untrusted input are fuzzed for a bounded time on their kept corpora.
.ci/fuzz.sh
