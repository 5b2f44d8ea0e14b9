#!/usr/bin/env bash
# Install ehc-edge on a fresh Debian 12 or 13 / Raspberry Pi OS Bookworm or Trixie machine.
#
#   scripts/install.sh [--central] [--test] [--venv DIR] [--no-pi-packages] [--print-packages]
#
#   (default)   the box: `pip install .` and the Debian packages a box needs
#   --central   also the central service's Python packages (the [central] extra:
#               web server, templates, PostgreSQL driver)
#   --test      also what the test suite needs (PostgreSQL server, openssl,
#               Chromium, more CJK fonts, the [test] extra, which includes [central])
#   --venv DIR  virtualenv to create or re-use (default: .venv in the repo root)
#   --no-pi-packages  on a Raspberry Pi without the Raspberry Pi OS archive, go on
#               without python3-picamera2 / python3-lgpio (USB cameras only)
#   --print-packages  print the Debian packages this machine would get, then exit
#
# Run as root, or as a user with sudo. Safe to re-run: a second run with
# unchanged setup.py / constraints.txt only checks and returns.
set -euo pipefail

usage() { sed -n '2,18s/^# \{0,1\}//p' "$0"; }
die() { echo "ehc: error: $*" >&2; exit 1; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=base
CENTRAL=0
PI_PACKAGES=1
PRINT_PACKAGES=0
VENV=""
# Overridable for tests: where the board model and apt's sources are read from.
MODEL_FILE="${EHC_DEVICE_MODEL_FILE:-/proc/device-tree/model}"
APT_ETC="${EHC_APT_ETC:-/etc/apt}"

while [ $# -gt 0 ]; do
    case "$1" in
        --test) MODE=test; CENTRAL=1 ;;
        --central) CENTRAL=1 ;;
        --no-pi-packages) PI_PACKAGES=0 ;;
        --print-packages) PRINT_PACKAGES=1 ;;
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
is_raspberry_pi() {
    [ -r "$MODEL_FILE" ] && tr -d '\0' <"$MODEL_FILE" | grep -q "Raspberry Pi"
}

# Raspberry Pi OS's own archive (archive.raspberrypi.com) is where python3-picamera2 (libcamera's
# Python side) and python3-lgpio live; plain Debian arm64 on a Pi does not have them.
has_raspberry_pi_archive() {
    grep -rqs "archive.raspberrypi" "$APT_ETC/sources.list" "$APT_ETC/sources.list.d/" 2>/dev/null
}

if is_raspberry_pi; then
    if has_raspberry_pi_archive; then
        # libcamera bindings, OpenCV for USB cameras and the lgpio pin backend of gpiozero come from apt
        PACKAGES+=(python3-picamera2 python3-opencv python3-lgpio)
    elif [ "$PI_PACKAGES" = 1 ]; then
        die "this Raspberry Pi ($(tr -d '\0' <"$MODEL_FILE")) has no Raspberry Pi OS archive in $APT_ETC:
  python3-picamera2 and python3-lgpio come only from archive.raspberrypi.com, not from Debian.
  Install Raspberry Pi OS (Bookworm or Trixie), add that archive (docs/hardware.md), or re-run with
  --no-pi-packages to go on without the camera module and the Pi 5's GPIO (USB cameras still work)."
    else
        echo "ehc: warning: no Raspberry Pi OS archive: skipping python3-picamera2 and python3-lgpio" >&2
        PACKAGES+=(python3-opencv)
    fi
fi
if [ "$PRINT_PACKAGES" = 1 ]; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
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
EXTRAS=()
[ "$CENTRAL" = 1 ] && EXTRAS+=(central)
[ "$MODE" = test ] && EXTRAS+=(test)
# On a Pi the venv sees apt's picamera2, whose simplejpeg (Bookworm) is built against numpy 1.x; the
# [pi] extra puts a simplejpeg wheel built for the venv's numpy 2 in front of it (docs/hardware.md).
is_raspberry_pi && EXTRAS+=(pi)
SPEC="."
[ ${#EXTRAS[@]} -eq 0 ] || SPEC=".[$(IFS=,; echo "${EXTRAS[*]}")]"
want="$( { cat setup.py constraints.txt; echo "spec=$SPEC"; } | sha256sum | cut -d' ' -f1 )"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    : # up to date
else
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    rm -f "$STAMP"
    "$VPY" -m pip install -q --upgrade pip
    "$VPY" -m pip install -q -c constraints.txt -e "$SPEC"
    echo "$want" >"$STAMP"
fi

echo "ehc: installed $SPEC into $VENV"
