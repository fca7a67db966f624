#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest, e.g. -m "not e2e".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

# Debian packages the tests start or call: installed when missing (as root, as CI runs), else named.
need_package() {  # need_package <program> <package> <why>
  if command -v "$1" > /dev/null || [[ -x "$1" ]]; then
    return
  fi
  if [[ "$(id -u)" == "0" ]]; then
    echo "test: installing $2 (Debian package) for $3 ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" > /dev/null
  else
    echo "test: $1 is missing; run: sudo apt-get install $2" >&2
    exit 1
  fi
}
need_package /usr/sbin/sshd openssh-server "the SFTP tests (a private sshd on a loopback port)"
need_package /usr/sbin/dovecot dovecot-imapd "the mailbox tests (a private IMAP server)"
need_package sqlite3 sqlite3 "the quick-start test (the quick start reads the demo's tables with it)"
need_package jq jq "the instances API walkthrough (curl + jq), which a test runs as written"
need_package /usr/bin/chromium chromium "the browser tests of the Integrations page and the customer portal"

# Two pytest-xdist workers, each taking whole modules: e2e tests mostly wait on Airflow components, so two
# run in about half the time of one. B2B_TEST_WORKERS=0 runs everything in this process (one traceback
# stream, pdb). Side by side, stacks once broke each other through ports picked by bind(0) and Fernet keys
# generated per component; tests/servers.py and tests/airflow_stack.py now rule both out.
exec .venv/bin/python -m pytest -n "${B2B_TEST_WORKERS:-2}" --dist loadfile "$@"
