#!/usr/bin/env bash
# Install ehc-edge on a fresh Debian 12 / Raspberry Pi OS Bookworm machine.
#
#   scripts/install.sh [--test] [--venv DIR]
#
#   --test      also install what the test suite needs (PostgreSQL server,
#               openssl, Chromium, more CJK fonts, the package's [test] extras)
#   --venv DIR  virtualenv to create or re-use (default: .venv in the repo root)
#
# Run as root, or as a user with sudo. Safe to re-run: a second run with
# unchanged setup.py / constraints.txt only checks and returns.
set -euo pipefail

usage() { sed -n '2,11s/^# \{0,1\}//p' "$0"; }
die() { echo "ehc: error: $*" >&2; exit 1; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=base
VENV=""

while [ $# -gt 0 ]; do
    case "$1" in
        --test) MODE=test ;;
        --venv)
            [ $# -ge 2 ] || die "--venv needs a directory"
            VENV="$2"; shift ;;
        --venv=*) VENV="${1#--venv=}" ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

# A relative --venv is relative to where the script was called from.
if [ -z "$VENV" ]; then
    VENV="$REPO_ROOT/.venv"
elif [ "${VENV#/}" = "$VENV" ]; then
    VENV="$PWD/$VENV"
fi
cd "$REPO_ROOT"

# --- Debian packages ---------------------------------------------------------

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
    mosquitto
    libzbar0
    tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim
    libtesseract-dev libleptonica-dev
    libsystemd-dev pkg-config
    fonts-noto-cjk fonts-ocr-b
    libusb-1.0-0
    python3-venv python3-dev gcc
)
if [ "$MODE" = test ]; then
    PACKAGES+=(postgresql openssl librsvg2-bin)  # rsvg-convert renders the SMART Health Card QR samples
    PACKAGES+=(chromium)                          # the dashboard's browser tests (Playwright drives /usr/bin/chromium)
    PACKAGES+=(fonts-wqy-microhei fonts-wqy-zenhei)  # more hospital fonts for the generated medical reports
fi
if [ -r /proc/device-tree/model ] && tr -d '\0' </proc/device-tree/model | grep -q "Raspberry Pi"; then
    # libcamera bindings, OpenCV for USB cameras and the lgpio pin backend of gpiozero come from apt
    PACKAGES+=(python3-picamera2 python3-opencv python3-lgpio)
fi

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
fi

# Run an apt-get command with its chatter sent to a log; print the log only
# when it fails (errors on stderr always show).
apt_quiet() {
    local log rc=0
    log="$(mktemp)"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -qq "$@" >"$log" || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 40 "$log" >&2
        rm -f "$log"
        die "apt-get $* failed (exit $rc)"
    fi
    rm -f "$log"
}

if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for pkg in "${PACKAGES[@]}"; do
        status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
        [ "$status" = "install ok installed" ] || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ] && [ ${#SUDO[@]} -eq 0 ]; then
            die "missing Debian packages (${missing[*]}) and not root, no sudo"
        fi
        echo "ehc: installing Debian packages: ${missing[*]}"
        apt_quiet update
        # mosquitto is installed for its binary only: no service is started,
        # enabled or configured here (the project runs its own brokers).
        apt_quiet install -y --no-install-recommends "${missing[@]}"
    fi
else
    echo "ehc: warning: dpkg-query not found, skipping Debian packages" >&2
fi

# --- Python virtualenv -------------------------------------------------------

if [ -x /usr/bin/python3 ]; then
    PYTHON=/usr/bin/python3
else
    PYTHON="$(command -v python3 || true)"
    [ -n "$PYTHON" ] || die "python3 not found"
fi

[ -f setup.py ] || die "setup.py not found in $REPO_ROOT"
[ -f constraints.txt ] || die "constraints.txt not found in $REPO_ROOT"

is_raspberry_pi() {
    [ -r /proc/device-tree/model ] &&
        tr -d '\0' </proc/device-tree/model | grep -q "Raspberry Pi"
}

# A venv whose interpreter no longer runs (base Python removed) is rebuilt.
if [ -f "$VENV/pyvenv.cfg" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "ehc: $VENV is broken, recreating it"
    rm -rf "$VENV"
fi

if [ ! -x "$VENV/bin/python" ]; then
    venv_args=()
    if is_raspberry_pi; then
        # picamera2 / libcamera come from apt, not PyPI.
        venv_args+=(--system-site-packages)
    fi
    echo "ehc: creating virtualenv $VENV (${PYTHON})"
    "$PYTHON" -m venv "${venv_args[@]}" "$VENV"
fi

VPY="$VENV/bin/python"
"$VPY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
    die "$VPY is older than Python 3.11"

STAMP="$VENV/.ehc-installed"
want="$( { cat setup.py constraints.txt; echo "mode=$MODE"; } | sha256sum | cut -d' ' -f1 )"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    : # up to date
else
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    rm -f "$STAMP"
    "$VPY" -m pip install -q --upgrade pip
    if [ "$MODE" = test ]; then
        "$VPY" -m pip install -q -c constraints.txt -e ".[test]"
    else
        "$VPY" -m pip install -q -c constraints.txt -e .
    fi
    echo "$want" >"$STAMP"
fi

echo "ehc: installed into $VENV"
