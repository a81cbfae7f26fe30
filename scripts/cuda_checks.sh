#!/usr/bin/env bash
# The checks that need a GPU (issues 12 and 14), on a machine with CUDA and
# the dependencies installed (python3 importing torch, speechbrain and this
# clone):
#
#   bash scripts/cuda_checks.sh OUT_DIR
#
# 1. second-order MAML's meta-gradient of the SynthDigits CRDNN on CUDA
#    against the CPU's, float64 (scripts/cuda_gradient_check.py);
#    tests on CUDA: fit_batch meta-gradients against finite differences
#    (second order through an LSTM in train and eval mode), the CTC's and
#    the LSTM's written-out derivatives (gradgradcheck), bf16 and fp16
#    against float32, DDP equality with gloo on CUDA tensors, and with NCCL
#    where there are 2 GPUs (NCCL needs one GPU per rank);
# 2. 500 outer steps of second-order MAML on the SynthDigits model: host
#    RSS and CUDA memory (benchmarks/memory.py);
# 3. one outer step per algorithm against a plain fit_batch
#    (benchmarks/outer_step.py).
# Each step writes its log under OUT_DIR; a failing step does not stop the
# others, and the script's exit status counts the failures.
set -uo pipefail
out="${1:-results/cuda}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
failures=0
step() {  # step NAME TIMEOUT COMMAND...
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    tail -n 4 "$out/$name.log"
    echo "== $name: exit $rc in $((SECONDS - t0)) s"
    [ $rc -eq 0 ] || failures=$((failures + 1))
}
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', \
torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), \
torch.cuda.get_device_name())"
step crdnn_gradient 300 python3 scripts/cuda_gradient_check.py
step gradients 300 env SBM_TEST_DEVICE=cuda python3 -m pytest -q \
    -p no:cacheprovider tests/integration/test_fit_batch_gradients.py \
    tests/integration/test_precision.py tests/unittests/test_ctc.py \
    tests/unittests/test_lstm.py
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
    step ddp_nccl 300 env SBM_TEST_DEVICE=cuda SBM_TEST_BACKEND=nccl \
        python3 -m pytest -q -x -p no:cacheprovider \
        tests/integration/test_ddp_equality.py
else
    echo "== ddp_nccl: not run: $gpus GPU (NCCL needs one GPU per rank)"
fi
step ddp_gloo_cuda 300 env SBM_TEST_DEVICE=cuda SBM_TEST_BACKEND=gloo \
    python3 -m pytest -q -p no:cacheprovider \
    tests/integration/test_ddp_equality.py
step memory "${MEMORY_TIMEOUT:-240}" python3 benchmarks/memory.py \
    --steps "${MEMORY_STEPS:-500}" --device cuda --json "$out"
work="$(mktemp -d)"  # the benchmark's corpus stays out of OUT_DIR
step outer_step 240 python3 benchmarks/outer_step.py --device cuda \
    --repeats 10 --out "$work"
cp "$work/outer_step.json" "$out/" 2>/dev/null
echo "failures: $failures"
exit "$failures"
