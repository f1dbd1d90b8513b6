#!/usr/bin/env bash
# fer-edge installer for NVIDIA Jetson (JetPack 4.6.x: L4T R32.6/R32.7, TensorRT 8.2, Python 3.6;
# also JetPack 5/6 with TensorRT 8.5/10). Run from the unpacked bundle:
#
#   sudo ./install.sh              # check, install, build the TensorRT engines, enable the service
#   ./install.sh --dry-run         # only check and print what would be done (no root needed)
#
# Options: --dry-run, --no-deps (do not pip-install pycuda / paho-mqtt / onnxruntime into the
#          bundle's venv; report them instead), --no-onnxruntime (no CPU fallback: the agent then
#          needs the GPU), --no-engine (skip the engine build; the service builds it at its first
#          start), --no-start (install and enable, but do not start now), -h/--help.
# The Python packages JetPack lacks go into a venv, $PREFIX/venv (--system-site-packages: it sees
# JetPack's tensorrt, OpenCV and numpy), whose newer pip installs the manylinux2014 wheels
# (onnxruntime) that JetPack 4.6's pip 9 cannot.
# Test hooks, honoured only with --dry-run: FER_EDGE_ROOT (a fake root holding etc/nv_tegra_release),
# FER_EDGE_PYTHON (the python3 to check), FER_EDGE_ARCH (instead of `uname -m`).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY_RUN=0
INSTALL_DEPS=1
WITH_ORT=1
BUILD_ENGINE=1
START=1

usage() {
    sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --no-deps) INSTALL_DEPS=0 ;;
        --no-onnxruntime) WITH_ORT=0 ;;
        --no-engine) BUILD_ENGINE=0 ;;
        --no-start) START=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

ROOT=""
PYTHON=/usr/bin/python3
ARCH="$(uname -m)"
if [ "$DRY_RUN" = 1 ]; then
    ROOT="${FER_EDGE_ROOT:-}"
    PYTHON="${FER_EDGE_PYTHON:-$PYTHON}"
    ARCH="${FER_EDGE_ARCH:-$ARCH}"
elif [ -n "${FER_EDGE_ROOT:-}${FER_EDGE_PYTHON:-}${FER_EDGE_ARCH:-}" ]; then
    echo "install.sh: FER_EDGE_ROOT/FER_EDGE_PYTHON/FER_EDGE_ARCH are test hooks for --dry-run only" >&2
    exit 2
fi

SERVICE_USER=fer-edge
PREFIX=/opt/fer-edge                 # code, model (PYTHONPATH of the service), venv/
VENV=$PREFIX/venv                    # pycuda, paho-mqtt, onnxruntime (sees JetPack's packages)
VPY=$VENV/bin/python3
ETC=/etc/fer-edge                    # agent.json (kept on reinstall)
STATE=/var/lib/fer-edge              # working dir: engines/, later the offline queue
UNIT=/etc/systemd/system/fer-edge.service
CUDA_BIN=/usr/local/cuda/bin
VERSION="$(cat "$HERE/VERSION" 2>/dev/null || echo unknown)"

PROBLEMS=""
WARNINGS=""
DEPS=""          # pip requirements to install into $VENV (pycuda, paho-mqtt, onnxruntime)
problem() { PROBLEMS="${PROBLEMS}  - $*"$'\n'; }
warn() { WARNINGS="${WARNINGS}  - $*"$'\n'; }
ok() { echo "  ok: $*"; }
say() { echo "$*"; }
run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '  [dry-run]'; printf ' %q' "$@"; echo
    else
        printf '  +'; printf ' %q' "$@"; echo
        "$@"
    fi
}
py() { local code="$1"; shift; "$PYTHON" -s -c "$code" "$@" 2>/dev/null; }

say "fer-edge Jetson installer (bundle $VERSION)$( [ "$DRY_RUN" = 1 ] && echo ': dry run, nothing is changed' )"
say "checking this machine:"

# ---------------------------------------------------------------- the machine
if [ "$ARCH" = aarch64 ]; then
    ok "architecture aarch64"
else
    problem "this machine is $ARCH, not aarch64: the bundle is for an NVIDIA Jetson"
fi

RELEASE="$ROOT/etc/nv_tegra_release"
L4T=""
if [ -f "$RELEASE" ]; then
    # e.g. "# R32 (release), REVISION: 7.1, GCID: 27915467, BOARD: t210ref, EABI: aarch64, DATE: ..."
    L4T="$(sed -n 's/^# R\([0-9]*\) (release), REVISION: \([0-9.]*\),.*/\1.\2/p' "$RELEASE" | head -n 1)"
    case "$L4T" in
        32.6.*) ok "L4T R$L4T (JetPack 4.6)" ;;
        32.7.*) ok "L4T R$L4T (JetPack 4.6.${L4T#32.7.})" ;;
        35.*) ok "L4T R$L4T (JetPack 5.x)" ;;
        36.*) ok "L4T R$L4T (JetPack 6.x)" ;;
        32.*) problem "L4T R$L4T is older than JetPack 4.6 (TensorRT 7): flash JetPack 4.6.x (L4T R32.6/R32.7)" ;;
        "") problem "$RELEASE: cannot read the L4T release line" ;;
        *) warn "L4T R$L4T is not a tested release (tested: R32.6/R32.7 = JetPack 4.6.x; R35, R36 expected to work)" ;;
    esac
else
    problem "$RELEASE not found: this is not a Jetson running L4T/JetPack (flash JetPack 4.6.x, see README.txt)"
fi

# ---------------------------------------------------------------- Python and its modules
PYVER=""
if command -v "$PYTHON" >/dev/null 2>&1; then
    PYVER="$(py 'import sys; print("%d.%d.%d" % sys.version_info[:3])' || true)"
fi
if [ -z "$PYVER" ]; then
    problem "$PYTHON not found or not working: sudo apt-get install python3"
elif ! py 'import sys; sys.exit(0 if sys.version_info >= (3, 6) else 1)'; then
    problem "Python $PYVER is too old: fer-edge needs Python >= 3.6 (JetPack 4.6 has 3.6.9)"
    PYVER=""
else
    ok "Python $PYVER ($PYTHON)"
fi

if [ -n "$PYVER" ]; then
    if NP="$(py 'import numpy; print(numpy.__version__)')"; then
        ok "numpy $NP"
    else
        problem "numpy not found for $PYTHON: sudo apt-get install python3-numpy"
    fi

    if TRT="$(py 'import tensorrt; print(tensorrt.__version__)')" && [ -n "$TRT" ]; then
        case "$TRT" in
            8.*|10.*) ok "TensorRT $TRT" ;;
            *) problem "TensorRT $TRT is not supported (8.x as in JetPack 4.6/5, or 10.x as in JetPack 6)" ;;
        esac
    else
        problem "TensorRT for Python not found (import tensorrt failed with $PYTHON): it is part of JetPack; install it with sudo apt-get install python3-libnvinfer (or the whole JetPack: sudo apt-get install nvidia-jetpack), or re-flash JetPack 4.6.x"
    fi

    if CV="$(py 'import cv2; print(cv2.__version__); print(cv2.__file__); print("GStreamer:YES" if any(l.strip().startswith("GStreamer:") and "YES" in l for l in cv2.getBuildInformation().splitlines()) else "GStreamer:NO")')"; then
        CV_VERSION="$(echo "$CV" | sed -n 1p)"
        CV_FILE="$(echo "$CV" | sed -n 2p)"
        if echo "$CV" | grep -q "GStreamer:YES"; then
            ok "OpenCV $CV_VERSION with GStreamer ($CV_FILE)"
        else
            problem "OpenCV $CV_VERSION at $CV_FILE has no GStreamer (CSI cameras need it): it is a pip wheel shadowing JetPack's build; remove it with sudo pip3 uninstall opencv-python opencv-python-headless (JetPack's python3-opencv lives in /usr/lib/python3/dist-packages)"
        fi
    else
        problem "OpenCV for Python not found: sudo apt-get install python3-opencv (JetPack's build, with GStreamer)"
    fi

    # Pinned per Python: JetPack 4.6 has 3.6 (CUDA 10.2), JetPack 5/6 have 3.8/3.10.
    if py 'import sys; sys.exit(0 if sys.version_info >= (3, 8) else 1)'; then
        PIP_REQ="pip==24.0"; PYCUDA_REQ="pycuda==2024.1.2"; ORT_REQ="onnxruntime==1.16.3"
    else
        PIP_REQ="pip==21.3.1"; PYCUDA_REQ="pycuda==2021.1"; ORT_REQ="onnxruntime==1.10.0"  # the last for 3.6
    fi
    if py 'import sys; sys.exit(0 if sys.version_info >= (3, 7) else 1)'; then
        PAHO_REQ="paho-mqtt==2.1.0"   # the agent supports 1.5 to 2.x
    else
        PAHO_REQ="paho-mqtt==1.6.1"   # paho-mqtt 2.x needs Python >= 3.7
    fi
    DEPS="$PYCUDA_REQ $PAHO_REQ"
    [ "$WITH_ORT" = 1 ] && DEPS="$DEPS $ORT_REQ"
    if ! py 'import ensurepip, venv'; then
        problem "the Python venv module is missing (the agent's packages go into $VENV): sudo apt-get install python3-venv"
    fi
    if PYCUDA="$(py 'import pycuda; print(pycuda.VERSION_TEXT)')"; then
        ok "pycuda $PYCUDA"
    elif [ -x "$ROOT$VPY" ] && PYCUDA="$("$ROOT$VPY" -s -c 'import pycuda; print(pycuda.VERSION_TEXT)' 2>/dev/null)"; then
        ok "pycuda $PYCUDA (in $VENV)"
    else
        # pycuda compiles against CUDA
        if [ ! -x "$ROOT$CUDA_BIN/nvcc" ]; then
            problem "pycuda is to be built and $CUDA_BIN/nvcc (CUDA 10.2 from JetPack) is not there: sudo apt-get install cuda-toolkit-10-2 (JetPack 4.6) or nvidia-jetpack"
        fi
        if ! py 'import sysconfig, os, sys; sys.exit(0 if os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)'; then
            problem "pycuda is to be built and that needs the Python headers: sudo apt-get install python3-dev build-essential"
        fi
    fi
    if [ "$INSTALL_DEPS" = 1 ]; then
        warn "to be installed with pip into $VENV: $PIP_REQ $DEPS"
    else
        problem "the agent's Python packages are not installed (--no-deps); install them with: $PYTHON -m venv --system-site-packages $VENV && $VPY -m pip install '$PIP_REQ' && sudo env PATH=$CUDA_BIN:\$PATH $VPY -m pip install$(for d in $DEPS; do printf " '%s'" "$d"; done)"
    fi
    if [ "$WITH_ORT" = 0 ]; then
        warn "--no-onnxruntime: no CPU fallback; the agent stops when the TensorRT engines cannot be built or checked"
    fi
fi

# ---------------------------------------------------------------- the bundle and the system
for f in edge/__init__.py jetson/__main__.py jetson/engine.py model/model.onnx model/model.check.npz \
         model/detector.onnx model/detector.check.npz config/agent.json systemd/fer-edge.service; do
    [ -f "$HERE/$f" ] || problem "bundle incomplete: $f is missing next to install.sh"
done
if [ -f "$HERE/MANIFEST.sha256" ] && command -v sha256sum >/dev/null 2>&1; then
    if (cd "$HERE" && sha256sum --quiet -c MANIFEST.sha256 >/dev/null 2>&1); then
        ok "bundle files match MANIFEST.sha256"
    else
        problem "bundle files do not match MANIFEST.sha256 (corrupt copy?): cd $HERE && sha256sum -c MANIFEST.sha256"
    fi
fi
if [ -z "$ROOT" ] && ! command -v systemctl >/dev/null 2>&1; then
    problem "systemctl not found: the agent is installed as a systemd service"
fi
if [ "$DRY_RUN" != 1 ] && [ "$(id -u)" != 0 ]; then
    problem "installing needs root: sudo $0"
fi

if [ -n "$WARNINGS" ]; then
    say "notes:"
    printf '%s' "$WARNINGS"
fi
if [ -n "$PROBLEMS" ]; then
    say "cannot install fer-edge here; fix these first:" >&2
    printf '%s' "$PROBLEMS" >&2
    exit 1
fi

# ---------------------------------------------------------------- install
say "installing (code in $PREFIX, config in $ETC, state in $STATE):"

if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    run usermod -a -G video "$SERVICE_USER"
else
    run useradd --system --user-group --groups video --home-dir "$STATE" --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER"
fi

if [ -z "$ROOT" ] && systemctl is-active --quiet fer-edge.service 2>/dev/null; then
    run systemctl stop fer-edge.service     # reinstall: free the camera and the GPU for the engine build
fi
run mkdir -p "$ROOT$PREFIX"
run rm -rf "$ROOT$PREFIX/convert"   # bundles before 0.4 shipped a convert/ subset
for d in edge jetson model; do
    run rm -rf "$ROOT$PREFIX/$d"
    run cp -R "$HERE/$d" "$ROOT$PREFIX/$d"
done
if [ "$INSTALL_DEPS" = 1 ]; then
    # The venv sees JetPack's tensorrt, cv2 and numpy; its own pip is new enough for manylinux2014
    # wheels (onnxruntime); pycuda compiles against CUDA.
    [ -x "$ROOT$VPY" ] || run "$PYTHON" -m venv --system-site-packages "$ROOT$VENV"
    run "$ROOT$VPY" -m pip install --quiet --upgrade "$PIP_REQ"
    run env "PATH=$CUDA_BIN:$PATH" "CUDA_ROOT=${CUDA_BIN%/bin}" "$ROOT$VPY" -m pip install $DEPS
fi
run cp "$HERE/README.txt" "$HERE/VERSION" "$HERE/uninstall.sh" "$ROOT$PREFIX/"
run chmod -R a+rX "$ROOT$PREFIX"

run mkdir -p "$ROOT$ETC"
# The config may name key and password files: readable by root and the service's group only.
if [ -f "$ROOT$ETC/agent.json" ]; then
    say "  keeping the existing $ETC/agent.json (the new template is $ETC/agent.json.new)"
    run install -m 0640 -o root -g "$SERVICE_USER" "$HERE/config/agent.json" "$ROOT$ETC/agent.json.new"
    run chown "root:$SERVICE_USER" "$ROOT$ETC/agent.json"
    run chmod 0640 "$ROOT$ETC/agent.json"
else
    run install -m 0640 -o root -g "$SERVICE_USER" "$HERE/config/agent.json" "$ROOT$ETC/agent.json"
fi
run install -m 0644 "$HERE/config/agent.ini.example" "$ROOT$ETC/agent.ini.example"

# State (engines, the queued events): the service user's alone.
run install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$ROOT$STATE" "$ROOT$STATE/engines"

if [ "$BUILD_ENGINE" = 1 ]; then
    say "checking the GPU as the service user, then building and checking the TensorRT engines of the emotion model and the face detector (FP16; minutes on a Jetson Nano, reused afterwards):"
    AS_SERVICE=(runuser -u "$SERVICE_USER" -- env "PYTHONPATH=$PREFIX" "FER_EDGE_ENGINE_DIR=$STATE/engines" "$VPY" -m jetson --config "$ETC/agent.json")
    if [ "$DRY_RUN" = 1 ]; then
        echo "  [dry-run] cd $STATE && ${AS_SERVICE[*]} --check-gpu"
        echo "  [dry-run] cd $STATE && ${AS_SERVICE[*]} --build-engine"
    elif ! (cd "$STATE" && "${AS_SERVICE[@]}" --check-gpu); then
        say "the GPU cannot be used by the service user $SERVICE_USER (see above); fix it, then run: sudo $0" >&2
        exit 1
    elif ! (cd "$STATE" && "${AS_SERVICE[@]}" --build-engine); then
        say "the TensorRT engines could not be built or did not pass their check (see above); fix it, then run: sudo $0" >&2
        exit 1
    fi
fi

run install -m 0644 "$HERE/systemd/fer-edge.service" "$ROOT$UNIT"
run systemctl daemon-reload
run systemctl enable fer-edge.service
if [ "$START" = 1 ]; then
    run systemctl restart fer-edge.service
fi

CONFIG="$ROOT$ETC/agent.json"
[ -f "$CONFIG" ] || CONFIG="$HERE/config/agent.json"
# broker host and topic prefix of the config, for the hints below
read -r BROKER_HOST BROKER_PORT PREFIX_TOPIC <<EOF_PY || true
$(py "import json, sys
from urllib.parse import urlsplit
c = json.load(open(sys.argv[1]))
u = urlsplit(c.get('broker') or '')
print(u.hostname or '-', u.port or (8883 if u.scheme == 'mqtts' else 1883), c.get('topic_prefix') or 'fer-edge')" \
    "$CONFIG" || echo "- 1883 fer-edge")
EOF_PY
say ""
if [ "$DRY_RUN" = 1 ]; then say "fer-edge $VERSION would be installed (dry run)."; else say "fer-edge $VERSION is installed."; fi
if [ "${BROKER_HOST:--}" = "-" ]; then
    say "No MQTT broker is set yet: put \"broker\": \"mqtt://HOST:1883\" in $ETC/agent.json, then"
    say "  sudo systemctl restart fer-edge"
    BROKER_HOST=BROKER
fi
say "Check it:"
say "  systemctl status fer-edge"
say "  journalctl -u fer-edge -f"
if [ "${BROKER_PORT:-1883}" = 1883 ]; then PORT_ARG=""; else PORT_ARG=" -p $BROKER_PORT"; fi
say "  mosquitto_sub -h $BROKER_HOST$PORT_ARG -t '${PREFIX_TOPIC:-fer-edge}/+/events' -v"
say "Camera check (stop the service first: sudo systemctl stop fer-edge):"
say "  sudo -u $SERVICE_USER env PYTHONPATH=$PREFIX $VPY -m jetson --config $ETC/agent.json --check-camera"
