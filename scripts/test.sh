#!/usr/bin/env bash
# Set up everything the tests need on a fresh machine and run them all: the one command the README
# gives and CI runs (.ci/run). PostgreSQL + pgvector and Chromium are installed where the machine
# allows it (apt, root); where it does not, their tests are skipped and the run ends with a loud
# banner saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --bench
bash scripts/install_postgres.sh  # PostgreSQL + pgvector for the store tests
bash scripts/install_browser.sh   # Chromium + ChromeDriver for the console's browser tests
.venv/bin/python -m pytest -q "$@"
