#!/usr/bin/env bash
# Install the package with its test extras into a virtual environment and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# The browser tests (tests/serving/test_web_browser.py) drive Debian's chromium through its
# chromedriver. As root with apt-get, install them when missing (20-35 s); otherwise, or
# with NWP_NO_BROWSER_INSTALL=1, those tests skip and say why.
if { ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; } &&
   [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${NWP_NO_BROWSER_INSTALL:-}" ]; then
  echo "test.sh: installing chromium and chromium-driver for the browser tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }
  apt_install || { apt-get update -qq >/dev/null 2>&1 && apt_install; } ||
    echo "test.sh: could not install chromium; the browser tests will skip" >&2
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
"$VENV/bin/python" -m pytest "$@"
