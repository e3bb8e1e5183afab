#!/usr/bin/env bash
# Run a jaxsuite job on every worker of a Cloud TPU VM slice (single host or pod) over gcloud ssh.
#
# Usage:
#   launch/tpu_pod.sh --tpu NAME --zone ZONE --workdir gs://BUCKET/run [--config CONFIG[:ARG]]
#                     [--project PROJECT] [--repo_dir DIR] [--python PY] [--sync] [--detach]
#                     [-- --config.key=value ...]
#
#   launch/tpu_pod.sh --tpu my-v5p-64 --zone us-east5-a --config configs/qwen3_pretrain.py \
#       --workdir gs://my-bucket/runs/qwen3 --sync -- --config.train.steps=20000
#
# How it works
#   `gcloud compute tpus tpu-vm ssh --worker=all --command=...` runs the same command on every host of the
#   slice. `python -m jaxsuite.launch` detects the TPU VM and calls jax.distributed.initialize() with no
#   arguments; jax reads the workers, this host's index and the coordinator from the TPU metadata.
#   * --workdir must be a bucket (gs://...) or a filesystem all workers mount: every host writes its shards
#     of each checkpoint there. Metrics, results.json and plots are written by process 0.
#   * The repository must exist at --repo_dir on every worker (with jaxsuite's dependencies and jax[tpu]
#     installed). --sync copies this checkout there first (gcloud ... scp --recurse --worker=all).
#   * --detach starts the job under nohup on every worker and returns; the log of each worker is
#     ~/jaxsuite-<tpu>.log (follow it with: gcloud compute tpus tpu-vm ssh NAME --zone Z --worker=0
#     --command="tail -f ~/jaxsuite-NAME.log").
#   * Running the same command again resumes from the workdir's checkpoints.
#   * Arguments after `--` are passed to the launcher unchanged (config overrides).
set -euo pipefail

usage() { sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

TPU="" ZONE="" PROJECT="" CONFIG="configs/qwen3_pretrain.py" WORKDIR="" REPO_DIR="~/jaxsuite" PY="python3"
SYNC=0 DETACH=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu) TPU="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --repo_dir) REPO_DIR="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --sync) SYNC=1; shift ;;
    --detach) DETACH=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "tpu_pod.sh: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n "$TPU" && -n "$ZONE" && -n "$WORKDIR" ]] || { echo "tpu_pod.sh: --tpu, --zone and --workdir are required" >&2; usage; }
if [[ "$WORKDIR" != gs://* ]]; then
  echo "tpu_pod.sh: warning: workdir '$WORKDIR' is not a gs:// bucket; on a multi-host slice it must be a" \
       "filesystem every worker mounts" >&2
fi

GCLOUD=(gcloud compute tpus tpu-vm)
SCOPE=(--zone "$ZONE")
[[ -n "$PROJECT" ]] && SCOPE+=(--project "$PROJECT")

if [[ "$SYNC" == 1 ]]; then
  REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  echo "syncing $REPO_ROOT to $TPU:$REPO_DIR on all workers"
  "${GCLOUD[@]}" ssh "$TPU" "${SCOPE[@]}" --worker=all --command="mkdir -p $REPO_DIR"
  "${GCLOUD[@]}" scp --recurse "$REPO_ROOT"/jaxsuite "$REPO_ROOT"/configs "$REPO_ROOT"/kernels_pallas \
      "$REPO_ROOT"/setup.py "$TPU":"$REPO_DIR"/ "${SCOPE[@]}" --worker=all
fi

# The launcher command, each argument quoted for the remote shell.
LAUNCH="$(printf '%q ' "$PY" -m jaxsuite.launch --config "$CONFIG" --workdir "$WORKDIR" "$@")"
LOG="~/jaxsuite-${TPU}.log"
if [[ "$DETACH" == 1 ]]; then
  REMOTE="cd $REPO_DIR && nohup $LAUNCH > $LOG 2>&1 < /dev/null &"
else
  REMOTE="set -o pipefail; cd $REPO_DIR && $LAUNCH 2>&1 | tee $LOG"
fi
echo "on all workers of $TPU: $REMOTE"
exec "${GCLOUD[@]}" ssh "$TPU" "${SCOPE[@]}" --worker=all --command="$REMOTE"
