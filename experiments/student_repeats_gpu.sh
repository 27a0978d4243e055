#!/usr/bin/env bash
# How do the student settings score over many runs on a GPU? experiments/student_repeats.py on a lent machine.
# experiments/student_repeats.py on a lent GPU machine (16 cores, one H100/H200), in one call of the device tool:
#   run(command="bash experiments/student_repeats_gpu.sh", carry=[".gpu"], timeout_s=...)
# .gpu/ (ignored by git) holds votes.pt (runs/rows_merged/pate/votes_mnist_test_papers.pt) and gpudata.tar.xz
# (data/FontDigits and data/MNIST/raw/t10k-*). Results: $OUT/summary.json, rewritten after every run.
# BUDGET: seconds after which the runs still going are stopped (the summary keeps every finished run).
set -uo pipefail
OUT=${OUT:-/tmp/out}; BUDGET=${BUDGET:-420}; WORKERS=${WORKERS:-14}; ACCEL=${ACCEL:-gpu}
mkdir -p "$OUT" /tmp/w
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -2
python3 -c "import torch, torchvision, lightning, torchmetrics; print('torch', torch.__version__, 'tv', torchvision.__version__, 'L', lightning.__version__, 'tm', torchmetrics.__version__, 'cuda', torch.cuda.is_available())"
tar xJf .gpu/gpudata.tar.xz -C /tmp/w || exit 3
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONUNBUFFERED=1
# MPS lets the workers' small kernels run side by side; without it they take turns (kept only if a client works)
if [[ "$ACCEL" == gpu ]] && command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log; mkdir -p /tmp/mps /tmp/mps-log
  # a warm machine from an earlier call may run the daemon already: start one only if none runs (a second
  # call once read "already running" as a failure, quit the daemon under its own clients and finished nothing)
  if { pgrep -x nvidia-cuda-mps-control >/dev/null || nvidia-cuda-mps-control -d; } &&
     timeout 60 python3 -c "import torch; torch.ones(1).cuda().sum().item()"; then
    echo "MPS on"
  else
    echo quit | nvidia-cuda-mps-control 2>/dev/null; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; echo "MPS off"
  fi
fi
timeout -s INT "$BUDGET" python3 experiments/student_repeats.py --votes .gpu/votes.pt --data_dir /tmp/w/data \
  --out /tmp/w/runs --summary "$OUT/summary.json" --accelerator "$ACCEL" --workers "$WORKERS" --threads 1 "$@" \
  2> "$OUT/stderr.txt"
echo "exit $?"
tail -c 3000 "$OUT/stderr.txt"
