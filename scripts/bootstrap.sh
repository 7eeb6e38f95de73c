#!/usr/bin/env bash
# Creates .venv (once) with the pinned CI set: torch + torchaudio, the upstream CosyVoice
# component classes (cosyvoice-minicpmo, --no-deps) and what they import, the test and quality
# tools, then this project.
# Re-running is cheap: a stamp of the requirement files skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${COSY_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
stamp="$venv/.cosy-stamp"
want=$(cat requirements/*.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # torch first and alone: anything else asking for torch then finds it satisfied.
  "${pip[@]}" install -r requirements/ci.txt
  "${pip[@]}" install -r requirements/components.txt -r requirements/test.txt -r requirements/quality.txt
  "${pip[@]}" install --no-deps -r requirements/upstream.txt
  "${pip[@]}" install --no-deps -e .
  echo "$want" > "$stamp"
fi
