#!/usr/bin/env bash
# Everything a run on a GPU machine needs to measure and check, in one device call.
#
# Here (the build machine), once per checkout:
#   echo /.gl/ >>.git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 \
#     libopengl0 libgl1 libglx0 libgles2)
#   bash benches/device_pack.sh      # builds, strips and packs the binaries into dist/
# Then on the GPU machine, with .gl/ and dist/ copied beside the checkout: `bash benches/device_run.sh`.
# It writes fovea.json, fovea_kernels.json (the same rows with each kernel's GPU time;
# timing waits for the GPU at every submission, so take wall times from fovea.json),
# torch.json, tests.txt (the GPU test binaries on the real GPU) and style.txt/style.png (the
# example's default run) under $OUT, then packs them all into $OUT/device.tgz (a device
# call returns at most 8 files). DEVICE_PARTS (default "bench kernels torch tests style")
# picks the parts. DEVICE_AB (variables, e.g. "FOVEA_COL2IM=0") times the rows once more
# under them, wall and per kernel, into fovea_ab.json and fovea_ab_kernels.json: a
# comparison within one call, which device_summary.py prints beside the main rows.
# Autocast: on a GPU the bench adds "... autocast" rows (operands rounded to f16), torch_bench
# the same rows under torch.autocast; DEVICE_AB="FOVEA_COOP=1" times them again on
# cooperative matrices, and the autocast test binary checks both paths against the CPU.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
out=${OUT:-out/device}
mkdir -p "$out"
parts=" ${DEVICE_PARTS:-bench kernels torch tests style} "
has() { [[ $parts == *" $1 "* ]]; }
[ -f dist/bins.tar.xz ] && tar xJf dist/bins.tar.xz -C dist
# The test and example binaries find their fixtures and assets through the build machine's
# CARGO_MANIFEST_DIR, /work/main.
[ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
if has bench; then
  timeout 240 ./dist/fovea-bench --json ${FOVEA_BENCH_ARGS:-} >"$out/fovea.json" 2>"$out/fovea.err"
  echo "fovea-bench exit $?"; cat "$out/fovea.json"; tail -3 "$out/fovea.err"
fi
if has kernels; then
  FOVEA_PROFILE=1 timeout 180 ./dist/fovea-bench --json --repeats 2 ${FOVEA_BENCH_ARGS:-} \
    >"$out/fovea_kernels.json" 2>"$out/fovea_kernels.err"
  echo "fovea-bench (kernel times) exit $?"; tail -3 "$out/fovea_kernels.err"
fi
if [ -n "${DEVICE_AB:-}" ]; then
  env $DEVICE_AB timeout 240 ./dist/fovea-bench --json ${FOVEA_BENCH_ARGS:-} \
    >"$out/fovea_ab.json" 2>"$out/fovea_ab.err"
  echo "fovea-bench under $DEVICE_AB exit $?"; tail -3 "$out/fovea_ab.err"
  env $DEVICE_AB FOVEA_PROFILE=1 timeout 180 ./dist/fovea-bench --json --repeats 2 \
    ${FOVEA_BENCH_ARGS:-} >"$out/fovea_ab_kernels.json" 2>/dev/null
fi
if has torch; then
  timeout 120 python3 benches/torch_bench.py >"$out/torch.json" 2>"$out/torch.err"
  echo "torch_bench exit $?"; cat "$out/torch.json"; tail -3 "$out/torch.err"
fi
if has tests && [ -d dist/tests ]; then
  for t in dist/tests/*; do
    echo "== $t" >>"$out/tests.txt"
    FOVEA_REQUIRE_GPU=1 timeout 150 "$t" >>"$out/tests.txt" 2>&1
    echo "$t exit $?" | tee -a "$out/tests.txt"
  done
  grep -E '^test .*(FAILED|ignored)|test result|panicked' "$out/tests.txt" | head -40
fi
if has style && [ -x dist/style_transfer ]; then
  start=$(date +%s%N)
  timeout 150 ./dist/style_transfer --device gpu --out "$out/style.png" >"$out/style.txt" 2>&1
  echo "style_transfer exit $? in $(( ($(date +%s%N) - start) / 1000000 )) ms"
  tail -c 1500 "$out/style.txt"
fi
tar czf /tmp/device.tgz -C "$out" . && find "$out" -type f -delete && mv /tmp/device.tgz "$out/"
