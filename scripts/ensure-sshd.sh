#!/usr/bin/env bash
# Makes sure OpenSSH's server binary (/usr/sbin/sshd) is on this machine: the SSH tunnel tests start their own
# sshd on 127.0.0.1 and a free port with a temporary configuration (never the system's sshd, never port 22).
# Installs Debian's openssh-server package when it is missing, without enabling or starting the system service.
set -euo pipefail

if [ -x /usr/sbin/sshd ]; then
  exit 0
fi

echo "sshd not found; installing Debian's openssh-server package for the SSH tunnel tests..." >&2
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d answering 101 keeps the package's postinst from starting the system sshd on port 22.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
trap '[ "$created_policy" -eq 1 ] && $SUDO rm -f "$policy"' EXIT
log=$(mktemp)
if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends openssh-server; } >"$log" 2>&1; then
  tail -5 "$log" >&2
  rm -f "$log"
  echo "Installing openssh-server failed; the SSH tunnel tests cannot run." >&2
  exit 1
fi
rm -f "$log"

if [ ! -x /usr/sbin/sshd ]; then
  echo "sshd is still missing after installing openssh-server; the SSH tunnel tests cannot run." >&2
  exit 1
fi
