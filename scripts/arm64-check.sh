#!/usr/bin/env bash
# Check the project on the boxes' platform: arm64 Debian 12 (Raspberry Pi OS Bookworm, Python 3.11) and
# Debian 13 (Trixie, Python 3.13), emulated with qemu-user-static through binfmt_misc.
#
#   scripts/arm64-check.sh [--release bookworm|trixie]... [--serial] [--rebuild]
#
#   --release R  check only this release (repeatable; default: bookworm and trixie, in parallel)
#   --serial     check the releases one after the other (default: both at once)
#   --rebuild    build the cached root trees again from scratch
#
# For each release: a root tree (mmdebstrap) cached under $EHC_ARM64_CACHE (default /var/cache/ehc-arm64)
# with the Debian packages install.sh added and pip's wheel cache, so a later run only copies the CURRENT
# checkout in (a fresh .venv every time: a changed dependency is installed, and a missing one caught) and
# runs what the README says: `bash scripts/install.sh`, `ehc-edge demo`, the first commands (face compare,
# decode, verify, ocr; scripts/arm64_smoke.py checks their answers against ../shared's ground truth), then
# `bash scripts/test.sh` with the native subset of the tests (NATIVE_TESTS below). ../shared is mounted
# read-only at ../shared. Emulator traps handled: a Raspberry Pi 4 /proc/cpuinfo is mounted over the
# host's (LiteRT's cpuinfo parser crashes on an x86 one) and QEMU_CPU=cortex-a72 (QEMU's default `max`
# CPU computes the dynamic-range int8 models wrongly).
# Last line: `arm64: bookworm=ok trixie=ok demo=ok tests=N passed` (N: both releases together); exit 1 if
# anything failed.
# Run as root (mounts, chroot); installs mmdebstrap, arch-test (its foreign-architecture check), qemu-user-static and binfmt-support when missing.
set -euo pipefail

usage() { sed -n '2,23s/^# \{0,1\}//p' "$0"; }
die() { echo "arm64: error: $*" >&2; exit 1; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${EHC_SHARED_DIR:-$(cd "$REPO_ROOT/.." && pwd)/shared}"
CACHE="${EHC_ARM64_CACHE:-/var/cache/ehc-arm64}"
MIRROR="${EHC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
QEMU_CPU_MODEL="${EHC_QEMU_CPU:-cortex-a72}"  # the Pi 4's core; cortex-a76 for a Pi 5
RELEASES=()
SERIAL=0
REBUILD=0

# Every native dependency family, by name: LiteRT models (face detection, landmarks, SFace, MiniFASNet),
# zxing-cpp / zbar / OpenCV, Tesseract through tesserocr (MRZ model and eng; the Chinese report page is the
# ocr smoke check), cryptography (COSE, HPKE, the strict CBOR decoder, HC1 and SHC credentials), serial
# ports over ptys (SAM reader, ESC/POS printer), Mosquitto with TLS and the uplink and central ingest,
# SQLite and PostgreSQL (psycopg) stores, the journal (systemd-python), the box's imports without the
# central packages, gpiozero without a pin factory. The slow property-based fuzz cases and the full OCR
# accuracy sets stay in the x86 suite.
NATIVE_TESTS=(
    tests/edge/face/test_face_models.py tests/edge/face/test_face_passive.py
    tests/edge/test_decode_cli.py::test_decode_prints_codes_positions_and_time
    tests/edge/test_scanner.py::test_every_valid_dcc_conformance_image_decodes
    tests/edge/test_scanner.py::test_1080p_frames_are_searched_reduced_and_small_codes_at_full_resolution
    tests/edge/test_scanner.py::test_region_tracking_reads_held_code_in_its_region_and_still_finds_new_ones
    tests/edge/documents/test_mrz_ocr.py::test_grey_and_small_frames tests/edge/documents/test_mrz_ocr.py::test_missing_model_falls_back_to_eng_and_says_so
    tests/mqtt/test_envelope.py --deselect tests/mqtt/test_envelope.py::test_fuzz_signed_protected_headers
    --deselect tests/mqtt/test_envelope.py::test_fuzz_signed_payload_maps
    --deselect tests/mqtt/test_envelope.py::test_fuzz_signed_arbitrary_payload_bytes
    tests/mqtt/test_sealed.py tests/foundation/test_strictcbor.py
    tests/edge/test_verify_cli.py::test_shc_with_the_issuer_key_set
    tests/edge/test_verify_cli.py::test_hc1_with_a_certificate_and_at_its_validation_clock
    tests/drivers/test_idcard_reader.py tests/drivers/test_printer.py
    tests/e2e/test_e2e_delivery.py tests/mqtt/test_outbox.py tests/central/test_store.py
    tests/foundation/test_logs.py tests/packaging/test_packaging.py tests/drivers/test_gpio.py::test_no_pin_factory_is_a_clear_error_naming_lgpio
)

while [ $# -gt 0 ]; do
    case "$1" in
        --release)
            [ $# -ge 2 ] || die "--release needs bookworm or trixie"
            RELEASES+=("$2"); shift ;;
        --release=*) RELEASES+=("${1#--release=}") ;;
        --serial) SERIAL=1 ;;
        --rebuild) REBUILD=1 ;;
        --inside) shift; inside_mode=1; break ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
[ ${#RELEASES[@]} -gt 0 ] || RELEASES=(bookworm trixie)
for r in "${RELEASES[@]}"; do
    case "$r" in bookworm|trixie) ;; *) die "unknown release: $r (bookworm or trixie)" ;; esac
done

# --- inside the tree ----------------------------------------------------------------------------------

if [ "${inside_mode:-0}" = 1 ]; then
    # Runs in the chroot, in the copied checkout; prints `arm64-inside: demo=ok tests=N passed` last.
    cd /root/ehc-edge
    export EHC_SHARED_DIR=/root/shared
    echo "arm64-inside: $(. /etc/os-release && echo "$PRETTY_NAME"), $(uname -m), $(python3 --version)"
    bash scripts/install.sh
    .venv/bin/ehc-edge demo >/tmp/demo.log 2>&1 || { tail -n 40 /tmp/demo.log; exit 1; }
    tail -n 1 /tmp/demo.log
    # The box install (what the demo just ran on) holds no package only the central service needs.
    box_pkgs="$(.venv/bin/python -m pip list --format=freeze 2>/dev/null | cut -d= -f1 | tr 'A-Z_.' 'a-z--' | sort)"
    central="$(grep -xE 'starlette|uvicorn|jinja2|psycopg|psycopg-binary' <<<"$box_pkgs" | tr '\n' ' ' || true)"
    [ -z "$central" ] || { echo "arm64-inside: the box install pulled central-only packages: $central"; exit 1; }
    echo "arm64-inside: box venv: $(wc -l <<<"$box_pkgs") packages, none central-only"
    grep -qx "demo: OK" /tmp/demo.log || { tail -n 40 /tmp/demo.log; exit 1; }
    for check in face decode verify; do
        .venv/bin/python scripts/arm64_smoke.py "$check"
    done
    bash scripts/install.sh --test
    .venv/bin/python scripts/arm64_smoke.py ocr
    bash scripts/test.sh -p no:cacheprovider "$@" | tee /tmp/pytest.log
    summary="$(tail -n 1 /tmp/pytest.log)"
    passed="$(sed -n 's/^\([0-9][0-9]*\) passed.*/\1/p' <<<"$summary")"
    if [ -z "$passed" ] || grep -Eq '[0-9]+ (failed|error)' <<<"$summary"; then
        echo "arm64-inside: tests failed: $summary"; exit 1
    fi
    echo "arm64-inside: demo=ok tests=$passed passed"
    exit 0
fi

# --- the host -----------------------------------------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "run as root (it mounts and chroots)"
[ -d "$SHARED" ] || die "shared data not found: $SHARED (set EHC_SHARED_DIR)"

host_tools() {
    local missing=() pkg
    for pkg in mmdebstrap arch-test qemu-user-static binfmt-support; do
        [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "arm64: installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
    fi
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 ||
        die "cannot register qemu-aarch64 with binfmt_misc"
    # F (fix binary): the interpreter is opened now, so the chroot needs no copy of it.
    grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 ||
        die "qemu-aarch64 is registered without the F flag; reinstall qemu-user-static"
}

build_tree() {  # build_tree RELEASE DIR
    local release="$1" dir="$2"
    echo "arm64: [$release] building the root tree (mmdebstrap, emulated; several minutes)"
    rm -rf "$dir.building"
    mmdebstrap --arch=arm64 --variant=apt --components=main \
        --include=ca-certificates,python3,python3-venv,procps \
        "$release" "$dir.building" "$MIRROR" >"$CACHE/$release.build.log" 2>&1 ||
        { tail -n 30 "$CACHE/$release.build.log"; die "[$release] mmdebstrap failed"; }
    rm -rf "$dir"
    mv "$dir.building" "$dir"
}

# Run the check for one release; the tree's mounts live in a private mount namespace (gone on exit).
check_release() {
    local release="$1" dir="$CACHE/$1" log="$CACHE/$1.log"
    exec 9>"$CACHE/$release.lock"
    flock 9  # one run per tree at a time (CI and a developer may share the machine)
    if [ "$REBUILD" = 1 ] || [ ! -x "$dir/usr/bin/python3" ]; then
        build_tree "$release" "$dir"
    fi
    # The current checkout (tracked and untracked files, not ignored ones), never an old copy or venv.
    rm -rf "$dir/root/ehc-edge"
    mkdir -p "$dir/root/ehc-edge" "$dir/root/shared"
    if git -C "$REPO_ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$REPO_ROOT" ls-files -z --cached --others --exclude-standard |
            (cd "$REPO_ROOT" && xargs -0 tar --ignore-failed-read -cf - 2>/dev/null) | tar -C "$dir/root/ehc-edge" -xf -
    else
        tar -C "$REPO_ROOT" --exclude=./.venv --exclude=./.git -cf - . | tar -C "$dir/root/ehc-edge" -xf -
    fi
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    # No service starts inside the tree (postgresql, mosquitto): tests start their own on free ports.
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 755 "$dir/usr/sbin/policy-rc.d"
    # The host's CA bundle: pip reaches PyPI through whatever TLS proxy this machine trusts.
    cp /etc/ssl/certs/ca-certificates.crt "$dir/root/host-ca.crt"
    cp "$REPO_ROOT/scripts/arm64/rpi4-cpuinfo" "$dir/root/rpi4-cpuinfo"
    echo "arm64: [$release] running install, demo, smoke checks and the native test subset (log: $log)"
    unshare --mount --propagation private bash -euo pipefail -c '
        root="$1"; shared="$2"; shift 2
        mount -t proc proc "$root/proc"
        mount --bind "$root/root/rpi4-cpuinfo" "$root/proc/cpuinfo"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
        mount -t tmpfs tmpfs "$root/dev/shm"
        mount --bind "$shared" "$root/root/shared"
        mount -o remount,bind,ro "$root/root/shared"
        exec chroot "$root" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            LANG=C.UTF-8 TERM=dumb QEMU_CPU="$QEMU_CPU" PIP_CERT=/root/host-ca.crt SSL_CERT_FILE=/root/host-ca.crt \
            bash /root/ehc-edge/scripts/arm64-check.sh --inside "$@"
    ' _ "$dir" "$SHARED" "${NATIVE_TESTS[@]}" >"$log" 2>&1
}

mkdir -p "$CACHE"
host_tools
export QEMU_CPU="$QEMU_CPU_MODEL"
start=$(date +%s)

declare -A rc=()
if [ "$SERIAL" = 1 ] || [ ${#RELEASES[@]} -eq 1 ]; then
    for r in "${RELEASES[@]}"; do
        rc[$r]=0; check_release "$r" || rc[$r]=$?
    done
else
    declare -A pid=()
    for r in "${RELEASES[@]}"; do
        check_release "$r" & pid[$r]=$!
    done
    for r in "${RELEASES[@]}"; do
        rc[$r]=0; wait "${pid[$r]}" || rc[$r]=$?
    done
fi

status=0 demo=ok total=0 line="arm64:"
for r in "${RELEASES[@]}"; do
    log="$CACHE/$r.log"
    echo "--- $r ($log)"
    grep -E '^(arm64-inside|smoke|demo): |^ehc: installed' "$log" || true
    inside="$(grep '^arm64-inside: demo=ok tests=' "$log" | tail -n 1 || true)"
    if [ "${rc[$r]}" -eq 0 ] && [ -n "$inside" ]; then
        line+=" $r=ok"
        total=$((total + $(sed -n 's/.*tests=\([0-9]*\) passed.*/\1/p' <<<"$inside")))
    else
        status=1
        line+=" $r=FAILED"
        grep -q '^demo: OK' "$log" || demo=FAILED
        echo "--- $r failed (exit ${rc[$r]}); end of its log:"
        tail -n 40 "$log"
    fi
done
echo "arm64: ${#RELEASES[@]} release(s) in $(( $(date +%s) - start )) s, QEMU_CPU=$QEMU_CPU_MODEL"
echo "$line demo=$demo tests=$total passed"
exit "$status"
