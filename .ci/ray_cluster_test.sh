#!/usr/bin/env bash
# `ray up` / `ray submit` / `ray down` for real on this machine, with Ray's "local" provider:
# a throwaway ssh server on 127.0.0.1:22 (Debian's openssh-server) and a throwaway key, a Ray head
# on 127.0.0.1 started by `ray up` from sweeps/cluster/local.yaml, `ray submit … sweeps/run.py --
# sweeps/ci.yaml`, a check of the sweep's results.csv, then `ray down`. Nothing but 127.0.0.1 is
# contacted. (The paths from before the YAMLs moved to configs/: kept on purpose, ray submit users
# rely on them.)
#
#   .ci/ray_cluster_test.sh [WORKDIR]       (env: VENV, PHANTOM=<phantom cohort folder to reuse>)
#
# Needs: sshd (openssh-server) and rsync, and the right to listen on 127.0.0.1:22 (root in CI).
# Exit 3 = prerequisites missing, 0 = the submitted sweep finished with every trial TERMINATED.
# The ssh sessions get their own HOME (sshd SetEnv) whose ~/.bashrc puts the venv on PATH, so the
# user's real dotfiles are not touched; `ray stop` (run by `ray down` on the head) is shimmed to
# stop only the processes of this cluster (every one carries this cluster's --temp-dir).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
WORK=${1:-$(mktemp -d /tmp/cordbench-raycluster-XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
export RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0

SSHD=$(command -v sshd || echo /usr/sbin/sshd)
if [ ! -x "$SSHD" ] || ! command -v rsync >/dev/null || ! command -v ssh >/dev/null; then
  echo "ray_cluster_test: needs sshd, ssh and rsync (Debian: apt-get install openssh-server rsync)" >&2
  exit 3
fi
if (exec 3<>/dev/tcp/127.0.0.1/22) 2>/dev/null; then
  echo "ray_cluster_test: 127.0.0.1:22 is already in use" >&2
  exit 3
fi

NAME=cordbench-ci-$$
PORT=$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RAYTMP=$(mktemp -d /tmp/cbray-XXXXXX)  # --temp-dir of this cluster (short: socket paths), the mark of its processes
SHOME=$WORK/home          # HOME of the ssh sessions
mkdir -p "$SHOME/bin" /run/sshd
CFG=$WORK/cluster.yaml
SSHD_PID=""
DOWN_DONE=0

stop_cluster() {  # kill the processes of this cluster only (matched by its temp dir), by pid
  "$VENV/bin/python" - "$RAYTMP" <<'PY'
import os, signal, sys, time
from pathlib import Path
mark = sys.argv[1].encode()
def procs():
    out = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            if int(d.name) != os.getpid() and mark in (d / "cmdline").read_bytes():
                out.append(int(d.name))
        except (OSError, ValueError):
            pass
    return out
for sig in (signal.SIGTERM, signal.SIGKILL):
    for p in procs():
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    for _ in range(20):
        if not procs():
            break
        time.sleep(0.25)
PY
}

cleanup() {
  set +e
  if [ "$DOWN_DONE" = 0 ] && [ -f "$CFG" ]; then
    timeout 60 "$VENV/bin/ray" down -y "$CFG" >"$WORK/ray_down_cleanup.log" 2>&1
  fi
  stop_cluster
  if [ -n "$SSHD_PID" ]; then  # the server and its per-connection children (ssh ControlPersist sessions)
    kill $(ps -o pid= --ppid "$SSHD_PID" 2>/dev/null) "$SSHD_PID" 2>/dev/null
  fi
  rm -rf "$RAYTMP"
  rm -f "/tmp/ray/cluster-$NAME.state" "/tmp/ray/cluster-$NAME.lock"
  grep -l -s -F "$NAME" /tmp/ray-config-* 2>/dev/null | xargs -r rm -f  # ray down's config cache
}
trap cleanup EXIT

# --- throwaway ssh server on 127.0.0.1:22 -------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/user_key"
cp "$WORK/user_key.pub" "$WORK/authorized_keys"
chmod 600 "$WORK/authorized_keys"
cat >"$WORK/sshd_config" <<EOF
ListenAddress 127.0.0.1:22
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
SetEnv HOME=$SHOME
EOF
# shim: `ray stop` stops this cluster only; everything else is the venv's ray
cat >"$SHOME/bin/ray" <<EOF
#!/usr/bin/env bash
if [ "\${1:-}" = stop ]; then exec bash "$WORK/stop_cluster.sh"; fi
exec "$VENV/bin/ray" "\$@"
EOF
{ echo '#!/usr/bin/env bash'; declare -f stop_cluster; echo "VENV='$VENV' RAYTMP='$RAYTMP' stop_cluster"; } \
  >"$WORK/stop_cluster.sh"
chmod +x "$SHOME/bin/ray" "$WORK/stop_cluster.sh"
printf 'export PATH=%s/bin:%s/bin:$PATH RAY_USAGE_STATS_ENABLED=0 RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0\n' \
  "$SHOME" "$VENV" >"$SHOME/.bashrc"
cp "$SHOME/.bashrc" "$SHOME/.profile"
"$SSHD" -f "$WORK/sshd_config" -E "$WORK/sshd.log"
for _ in $(seq 50); do [ -s "$WORK/sshd.pid" ] && break; sleep 0.1; done
SSHD_PID=$(cat "$WORK/sshd.pid")

# --- cluster config: sweeps/cluster/local.yaml with this key, user, port and temp dir -------------
"$VENV/bin/python" - "$REPO/sweeps/cluster/local.yaml" "$CFG" "$NAME" "$(id -un)" "$WORK/user_key" "$PORT" \
  "$RAYTMP" <<'PY'
import sys, yaml
src, dst, name, user, key, port, tmp = sys.argv[1:]
cfg = yaml.safe_load(open(src))
cfg["cluster_name"] = name
cfg["auth"] = {"ssh_user": user, "ssh_private_key": key}
# no `ray stop` before the start: other Ray instances on this machine must keep running
cfg["head_start_ray_commands"] = [
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 ray start --head --node-ip-address=127.0.0.1"
    f" --port={port} --num-cpus=2 --include-dashboard=false --temp-dir={tmp}"
    " --autoscaling-config=~/ray_bootstrap_config.yaml"]
cfg["worker_start_ray_commands"] = []
yaml.safe_dump(cfg, open(dst, "w"), sort_keys=False)
PY

SECONDS=0
echo "== ray up ($NAME, head 127.0.0.1:$PORT)"
timeout 300 "$VENV/bin/ray" up -y --no-config-cache "$CFG" >"$WORK/ray_up.log" 2>&1 \
  || { tail -40 "$WORK/ray_up.log"; exit 1; }
echo "   up after ${SECONDS}s"

echo "== ray submit sweeps/run.py -- sweeps/ci.yaml"
EXTRA=(--override config.logger.wandb.enabled=false --override ray.verbose=0)
if [ -n "${PHANTOM:-}" ]; then EXTRA+=(--override "config.data.root=$PHANTOM"); fi
timeout 600 "$VENV/bin/ray" submit --no-config-cache "$CFG" "$REPO/sweeps/run.py" -- sweeps/ci.yaml \
  --storage "$WORK/storage" --address "127.0.0.1:$PORT" "${EXTRA[@]}" >"$WORK/ray_submit.log" 2>&1 \
  || { tail -40 "$WORK/ray_submit.log"; exit 1; }
echo "   submitted sweep finished after ${SECONDS}s"

"$VENV/bin/python" - "$WORK/storage/ci/results.csv" <<'PY'
import sys
import pandas as pd
df = pd.read_csv(sys.argv[1])
print(df[["trial_id", "status", "seed", "val_dice", "test_dice", "epochs"]].to_string(index=False))
assert len(df) == 2 and df["trial_id"].is_unique, "expected the 2 trials of sweeps/ci.yaml once each"
assert (df["status"] == "TERMINATED").all() and df["test_dice"].notna().all(), "a trial did not finish"
PY

echo "== ray down"
timeout 120 "$VENV/bin/ray" down -y "$CFG" >"$WORK/ray_down.log" 2>&1 || { tail -40 "$WORK/ray_down.log"; exit 1; }
DOWN_DONE=1
left=$("$VENV/bin/python" -c '
import os, sys
from pathlib import Path
mark = sys.argv[1].encode()
print(sum(1 for d in Path("/proc").glob("[0-9]*") if d.name != str(os.getpid())
          and mark in (d / "cmdline").read_bytes() if (d / "cmdline").exists()))' "$RAYTMP" 2>/dev/null || echo 0)
echo "   down after ${SECONDS}s; processes of the cluster left: $left"
[ "$left" -eq 0 ]
echo "ray_cluster_test: OK"
