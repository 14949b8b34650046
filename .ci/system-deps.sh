#!/usr/bin/env bash
# System packages used by tests: headless Chromium (report screenshots), openssh-server and rsync
# (the `ray up`/`ray submit`/`ray down` test on a loopback ssh server), slurm-wlm and munge (the SLURM
# tests: munged, slurmctld and two slurmd on this machine). Installs only what is missing.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
{ command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; } || need+=(openssh-server)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
{ command -v slurmctld >/dev/null 2>&1 || [ -x /usr/sbin/slurmctld ]; } || need+=(slurm-wlm)
{ command -v munged >/dev/null 2>&1 || [ -x /usr/sbin/munged ]; } || need+=(munge)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "system-deps: missing ${need[*]} (install them with apt-get as root); tests that need them will fail" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
