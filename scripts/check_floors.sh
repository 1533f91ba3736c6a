#!/usr/bin/env bash
# Install every dependency at the lowest version pyproject.toml allows (its ">=" floors as "=="), then run a
# smoke test of train, export, decode and the CLI, so the floors stay true. Not part of CI (it installs a second
# set of packages): run it when a floor moves or before a release.
#   bash scripts/check_floors.sh            # torch at its floor too (a large download)
#   KEEP_TORCH=1 bash scripts/check_floors.sh   # every floor but torch's (torch as the range resolves it)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${FLOORS_VENV:-.floors-venv}
rm -rf "$venv"
python3 -m venv "$venv"
. "$venv/bin/activate"
python -m pip install -q --upgrade pip packaging
# a floor names a version line ("2.26"), so take the lowest release the registry holds at or above it
pins=$(python - <<'PY'
import os, re, subprocess, tomllib
from packaging.version import InvalidVersion, Version

def lowest_at_or_above(name: str, floor: str) -> str:
    listing = subprocess.run(["pip", "index", "versions", name], capture_output=True, text=True).stdout
    found = re.search(r"Available versions: (.*)", listing)
    versions = []
    for text in (found.group(1).split(", ") if found else []):
        try:
            versions.append(Version(text))
        except InvalidVersion:
            pass
    candidates = [v for v in versions if v >= Version(floor) and not v.is_prerelease]
    return str(min(candidates)) if candidates else floor

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
    found = re.match(r"([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([^,;\s]+)", spec)
    if found is None:  # our own extras (clipwhisper[tracking]): their floors are listed where they are defined
        continue
    name, floor = found.groups()
    keep = name == "torch" and os.environ.get("KEEP_TORCH")
    print(f"{name}>={floor}" if keep else f"{name}=={lowest_at_or_above(name, floor)}")
PY
)
echo "$pins" | tr '\n' ' '; echo
# openai-whisper's oldest sdists import pkg_resources, which setuptools 81 removed: build them without isolation
pip install -q "setuptools<81" wheel
pip install -q --no-build-isolation $pins
pip install -q --no-deps -e .
pip check
python -m pytest -q -x -m "not real" tests/test_cli.py tests/test_config.py tests/test_export.py tests/test_decode.py
