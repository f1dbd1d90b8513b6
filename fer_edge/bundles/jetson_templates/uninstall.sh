#!/usr/bin/env bash
# fer-edge uninstaller for NVIDIA Jetson: stops and removes the service and /opt/fer-edge.
#
#   sudo ./uninstall.sh            # keeps /etc/fer-edge (config) and /var/lib/fer-edge (engines, state)
#   sudo ./uninstall.sh --purge    # also removes those and the fer-edge user
#   ./uninstall.sh --dry-run       # print what would be done
#
# pip packages installed by install.sh (pycuda, paho-mqtt) are left in place.
# Test hook, honoured only with --dry-run: FER_EDGE_ROOT (a fake root).
set -euo pipefail

DRY_RUN=0
PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done

ROOT=""
if [ "$DRY_RUN" = 1 ]; then
    ROOT="${FER_EDGE_ROOT:-}"
elif [ -n "${FER_EDGE_ROOT:-}" ]; then
    echo "uninstall.sh: FER_EDGE_ROOT is a test hook for --dry-run only" >&2
    exit 2
elif [ "$(id -u)" != 0 ]; then
    echo "uninstall.sh: needs root: sudo $0" >&2
    exit 1
fi

run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf '  [dry-run]'; printf ' %q' "$@"; echo
    else
        printf '  +'; printf ' %q' "$@"; echo
        "$@"
    fi
}

UNIT=/etc/systemd/system/fer-edge.service
if [ -n "$ROOT" ] || command -v systemctl >/dev/null 2>&1; then
    run systemctl disable --now fer-edge.service || true
fi
run rm -f "$ROOT$UNIT"
if [ -n "$ROOT" ] || command -v systemctl >/dev/null 2>&1; then
    run systemctl daemon-reload
fi
run rm -rf "$ROOT/opt/fer-edge"
if [ "$PURGE" = 1 ]; then
    run rm -rf "$ROOT/etc/fer-edge" "$ROOT/var/lib/fer-edge"
    if id -u fer-edge >/dev/null 2>&1; then
        run userdel fer-edge
    fi
    echo "fer-edge removed, with its config, state and user."
else
    echo "fer-edge removed; kept /etc/fer-edge (config) and /var/lib/fer-edge (engines); --purge removes them."
fi
