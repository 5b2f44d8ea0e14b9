#!/usr/bin/env bash
# Check the systemd units in systemd/ the way CI does:
#
#   1. `systemd-analyze verify` on every unit (and the Mosquitto drop-in when mosquitto.service is installed):
#      any line on stderr fails, except "Unknown key" warnings about units that are not ours (packaged units
#      written for a newer systemd). An unknown key in one of our units is a typo and fails.
#   2. `systemd-analyze security --offline=true` on every service in the folder (box and central host alike):
#      the overall exposure must be at most $EHC_EXPOSURE_MAX (default 2.5).
#   3. sysusers.d and tmpfiles.d files applied to an empty root.
#
# The units run /opt/ehc-edge/.venv/bin/…, which does not exist on a CI machine, and `verify` refuses a unit
# whose command is not executable. So everything runs against a temporary root (--root=): the host's packaged
# units are copied in (for sysinit.target, network-online.target, …), our units go to /etc/systemd/system, the
# venv's commands become stub scripts and every other command the units name is linked from the host (a
# command missing on the host is an error). The unit files themselves are checked unchanged.
#
# Usage: scripts/check_units.sh [UNIT_DIR]        (default: the repository's systemd/)
# Exit 0 when everything passes; 1 naming each failure; 77 when systemd-analyze is missing.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
units_dir="$(cd "${1:-$here/systemd}" && pwd)"
exposure_max="${EHC_EXPOSURE_MAX:-2.5}"
# The services whose absence is an error (the rest of the folder is checked as found).
required_services=(ehc-station.service ehc-uplink.service ehc-renew.service ehc-retention.service
                   ehc-logrotate.service ehc-central.service ehc-enroll.service ehc-dashboard.service)
venv_prefix=/opt/ehc-edge/.venv/bin/

if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "check_units: systemd-analyze not found (apt-get install systemd)" >&2
    exit 77
fi
echo "check_units: $(systemd-analyze --version | head -n1), units in $units_dir"

root="$(mktemp -d "${TMPDIR:-/tmp}/ehc-units.XXXXXX")"
trap 'rm -rf "$root"' EXIT
failures=()
fail() { failures+=("$1"); echo "FAIL: $1" >&2; }

# --- the temporary root -------------------------------------------------------------------------------------
mkdir -p "$root/usr/lib/systemd/system" "$root/etc/systemd/system"
for d in /usr/lib/systemd/system /lib/systemd/system; do
    [ -d "$d" ] && cp -a "$d/." "$root/usr/lib/systemd/system/" 2>/dev/null
done
ours=()
for f in "$units_dir"/*.service "$units_dir"/*.timer "$units_dir"/*.target "$units_dir"/*.socket "$units_dir"/*.path; do
    [ -e "$f" ] || continue
    cp "$f" "$root/etc/systemd/system/"
    ours+=("$(basename "$f")")
done
dropins=()
for d in "$units_dir"/*.service.d; do
    [ -d "$d" ] || continue
    name="$(basename "$d")"
    mkdir -p "$root/etc/systemd/system/$name"
    for conf in "$d"/*; do
        [ -f "$conf" ] || continue
        # a drop-in named without .conf in the repository installs as ehc.conf (see the file's header)
        target="$(basename "$conf")"; [[ "$target" == *.conf ]] || target=ehc.conf
        cp "$conf" "$root/etc/systemd/system/$name/$target"
    done
    dropins+=("${name%.d}")
done
if [ ${#ours[@]} -eq 0 ]; then
    echo "check_units: no units in $units_dir" >&2
    exit 1
fi

# every command named by Exec*= lines of our units and drop-ins: a stub for the venv, the host's binary otherwise
# (for a drop-in, also those of the packaged unit it changes, which verify checks as well)
exec_files=("$root/etc/systemd/system"/*.*)
for unit in "${dropins[@]}"; do
    exec_files+=("$root/etc/systemd/system/$unit.d"/*)
    [ -e "$root/usr/lib/systemd/system/$unit" ] && exec_files+=("$root/usr/lib/systemd/system/$unit")
done
mapfile -t commands < <(grep -hsE '^\s*Exec[A-Za-z]*=' "${exec_files[@]}" \
    | sed -E 's/^\s*Exec[A-Za-z]*=//; s/^[-@+!:]+//' | awk 'NF {print $1}' | sort -u)
for cmd in "${commands[@]}"; do
    case "$cmd" in
        /*) ;;
        *) continue ;;  # empty ExecStart= reset or a name resolved through PATH
    esac
    mkdir -p "$root$(dirname "$cmd")"
    if [[ "$cmd" == "$venv_prefix"* ]]; then
        printf '#!/bin/sh\nexit 0\n' > "$root$cmd"
        chmod 0755 "$root$cmd"
    elif [ -x "$cmd" ]; then
        cp -L "$cmd" "$root$cmd"  # a copy: verify only checks that it is an executable file
    else
        fail "a unit runs $cmd, which is neither in $venv_prefix nor installed on this machine"
    fi
done

# --- 1. verify ----------------------------------------------------------------------------------------------
is_ours() {  # does a stderr line talk about one of our units?
    local line="$1" u
    for u in "${ours[@]}" "${dropins[@]}"; do
        [[ "$line" == *"$u"* ]] && return 0
    done
    return 1
}
verify() {  # unit name
    local unit="$1" err line bad=0
    err="$(cd / && systemd-analyze verify --man=no --root="$root" "$unit" 2>&1 >/dev/null)"
    local rc=$?
    while IFS= read -r line; do
        [ -n "$line" ] || continue
        if [[ "$line" == *"Unknown key"* || "$line" == *"Unknown section"* ]] && ! is_ours "$line"; then
            echo "  (ignored, not our unit) $line"
            continue
        fi
        echo "  $line" >&2
        bad=1
    done <<< "$err"
    if [ $rc -ne 0 ] || [ $bad -ne 0 ]; then
        fail "systemd-analyze verify $unit (exit $rc)"
    else
        echo "verify $unit: ok"
    fi
}
for unit in "${ours[@]}"; do
    verify "$unit"
done
for unit in "${dropins[@]}"; do
    if [ -e "$root/usr/lib/systemd/system/$unit" ]; then
        verify "$unit"
    else
        echo "verify $unit.d: skipped, $unit is not installed on this machine"
    fi
done

# --- 2. security exposure -----------------------------------------------------------------------------------
# systemd 252 takes --threshold= as an integer on a 0–100 scale (the printed 0.0–10.0 exposure times ten).
threshold="$(awk -v x="$exposure_max" 'BEGIN { printf "%d", x * 10 + 0.5 }')"
services=()
for unit in "${required_services[@]}"; do
    [ -e "$root/etc/systemd/system/$unit" ] || fail "service $unit is missing from $units_dir"
done
for unit in "${ours[@]}"; do
    [[ "$unit" == *.service ]] && services+=("$unit")
done
for unit in "${services[@]}"; do
    out="$(cd / && systemd-analyze security --offline=true --threshold="$threshold" --root="$root" \
        "/etc/systemd/system/$unit" 2>&1)"
    rc=$?
    score="$(grep -Eo 'Overall exposure level for [^:]+: [0-9.]+ [A-Z]+' <<< "$out" | awk '{print $(NF-1), $NF}')"
    if [ $rc -ne 0 ] || [ -z "$score" ]; then
        echo "$out" | grep -E '✗|→|rror' >&2
        fail "systemd-analyze security $unit: exposure ${score:-unknown} (at most $exposure_max allowed)"
    else
        echo "security $unit: exposure $score (at most $exposure_max)"
    fi
done

# --- 3. sysusers.d and tmpfiles.d ---------------------------------------------------------------------------
for conf in "$units_dir"/*.sysusers.conf; do
    [ -e "$conf" ] || continue
    sroot="$root/sysusers-$(basename "$conf")"
    mkdir -p "$sroot/etc"
    # Debian's base groups the files may add members to
    grep -E '^(root|video|dialout|lp|plugdev|nogroup):' /etc/group > "$sroot/etc/group" 2>/dev/null || true
    grep -E '^(root|nobody):' /etc/passwd > "$sroot/etc/passwd" 2>/dev/null || true
    if err="$(systemd-sysusers --root="$sroot" "$conf" 2>&1)"; then
        echo "sysusers $(basename "$conf"): ok"
    else
        echo "$err" >&2
        fail "systemd-sysusers $(basename "$conf")"
    fi
done
for conf in "$units_dir"/*.tmpfiles.conf; do
    [ -e "$conf" ] || continue
    troot="$root/tmpfiles-$(basename "$conf")"
    mkdir -p "$troot"
    if err="$(systemd-tmpfiles --root="$troot" --create "$conf" 2>&1)" && [ -z "$err" ]; then
        echo "tmpfiles $(basename "$conf"): ok"
    else
        echo "$err" >&2
        fail "systemd-tmpfiles $(basename "$conf")"
    fi
done

if [ ${#failures[@]} -ne 0 ]; then
    echo "check_units: ${#failures[@]} failure(s):" >&2
    printf '  %s\n' "${failures[@]}" >&2
    exit 1
fi
echo "check_units: OK"
