#!/usr/bin/env bash
# Debian packages the workers and tests need at run time (not Python wheels):
#   libusb-1.0-0, libgl1, libegl1, libx11-6  open3d's shared library links them (import fails
#                                            without them, even headless)
#   libgomp1                                 OpenMP runtime for native wheels
# Installs what is missing when run as root (or with password-less sudo); otherwise prints
# the command to run and exits 0, so `make demo` still tries.
set -euo pipefail
need=()
for pkg in libusb-1.0-0 libgl1 libegl1 libx11-6 libgomp1; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    need+=("$pkg")
  fi
done
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: not a Debian/Ubuntu system; make sure these are installed: ${need[*]}" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
  echo "system-deps: missing ${need[*]}; run: sudo apt-get install -y ${need[*]}" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
