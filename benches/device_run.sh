#!/usr/bin/env bash
# Everything a session with a lent GPU needs to measure, in one device call.
#
# Here (the build machine), once per session:
#   echo /.gl/ >>.git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 \
#     libopengl0 libgl1 libglx0 libgles2)
#   cargo build --release --bin fovea-bench && mkdir -p dist && cp target/release/fovea-bench dist/
# Then the device call: command `bash benches/device_run.sh`, carry [".gl", "dist"].
# It writes fovea.json, fovea_kernels.json (the same rows with each kernel's GPU time;
# timing waits for the GPU at every submission, so take wall times from fovea.json) and
# torch.json (and their stderr) under $OUT.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
out=${OUT:-out/device}
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
./dist/fovea-bench --json ${FOVEA_BENCH_ARGS:-} >"$out/fovea.json" 2>"$out/fovea.err"
echo "fovea-bench exit $?"
FOVEA_PROFILE=1 ./dist/fovea-bench --json --repeats 2 ${FOVEA_BENCH_ARGS:-} >"$out/fovea_kernels.json" 2>"$out/fovea_kernels.err"
echo "fovea-bench (kernel times) exit $?"
python3 benches/torch_bench.py >"$out/torch.json" 2>"$out/torch.err"
echo "torch_bench exit $?"
cat "$out/gpu.txt" "$out/fovea.json" "$out/torch.json"
tail -5 "$out/fovea.err" "$out/fovea_kernels.err" "$out/torch.err"
