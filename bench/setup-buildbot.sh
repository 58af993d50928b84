#!/usr/bin/env bash
# Create bench/.venv-buildbot with the reference Buildbot master and worker.
#
# Usage: bench/setup-buildbot.sh            (uses python3.11 if present, else python3)
#        PYTHON=/path/to/python bench/setup-buildbot.sh
set -euo pipefail

BUILDBOT_VERSION="${BUILDBOT_VERSION:-4.3.0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-buildbot"

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

echo "creating $venv with $("$PYTHON" --version 2>&1)"
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
# buildbot-www is required: without it the master does not serve /api/v2 at all
# (see README.md).
"$venv/bin/python" -m pip install --quiet \
    "buildbot==$BUILDBOT_VERSION" \
    "buildbot-www==$BUILDBOT_VERSION" \
    "buildbot-worker==$BUILDBOT_VERSION"

"$venv/bin/buildbot" --version
"$venv/bin/buildbot-worker" --version
echo "ok: $venv"
