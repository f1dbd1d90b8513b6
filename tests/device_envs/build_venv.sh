#!/usr/bin/env bash
# build_venv.sh NAME PYTHON_VERSION OUT_DIR
#
# One old-toolchain venv (`make old-pythons`): OUT_DIR/NAME made with pyenv's Python PYTHON_VERSION
# (`PYENV_VERSION=X.Y.Z pythonX.Y -m venv`), pip upgraded to "pip<22" (the last line for 3.6), then
# tests/device_envs/NAME.txt installed, then NAME-nodeps.txt with --no-deps (when it exists).
# The stamp OUT_DIR/NAME/.installed holds a copy of the requirement lines it was built from; the
# venv is rebuilt from scratch when they change, and left alone otherwise.
# Without that Python the venv is not built and the tests that need it skip, saying why.
set -euo pipefail
name=$1 version=$2 out=$3
here=$(cd "$(dirname "$0")" && pwd)
venv=$out/$name
stamp=$venv/.installed
reqs=("$here/$name.txt")
[ -f "$here/$name-nodeps.txt" ] && reqs=("$here/$name-nodeps.txt" "${reqs[@]}")
want=$(cat "${reqs[@]}")
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  touch "$stamp"  # same lines: newer than the requirement files again, nothing rebuilt
  exit 0
fi
short=python${version%.*}
if ! found=$(PYENV_VERSION=$version "$short" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) \
    || [ "$found" != "$version" ]; then
  echo "old-pythons: Python $version not found (PYENV_VERSION=$version $short); $venv not built," \
       "its tests will skip (pyenv install $version)" >&2
  exit 0
fi
start=$(date +%s)
rm -rf "$venv"
mkdir -p "$out"
PYENV_VERSION=$version "$short" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip<22"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --prefer-binary)
case $name in
  *-tf14) "${pip[@]}" --no-deps -r "$here/$name.txt" ;;  # see the file: TensorFlow 1.4 needs nothing else
  *) "${pip[@]}" -r "$here/$name.txt" ;;
esac
if [ -f "$here/$name-nodeps.txt" ]; then  # last, so that pip's resolver does not list what it skips
  "${pip[@]}" --no-deps -r "$here/$name-nodeps.txt"
fi
printf '%s\n' "$want" > "$stamp.tmp"
mv "$stamp.tmp" "$stamp"
echo "old-pythons: built $venv (Python $version) in $(( $(date +%s) - start )) s"
