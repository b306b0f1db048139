"""The rows of fovea-bench timed in PyTorch (FP32, TF32 off), for a side-by-side ratio on
the same machine: python3 benches/torch_bench.py [--batch N] [--matmul N]."""
import argparse, json, time
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=10**9)
ap.add_argument("--matmul", type=int, default=4096)
ap.add_argument("--repeats", type=int, default=5)
a = ap.parse_args()
dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

def sync():
    if dev == "cuda":
        torch.cuda.synchronize()

def timed(f):
    f(); sync()
    ms = []
    for _ in range(a.repeats):
        t = time.perf_counter(); f(); sync(); ms.append((time.perf_counter() - t) * 1e3)
    return sorted(ms)[len(ms) // 2]

rows = []
for n, cin, h, w, cout, k, s, p, g in [(8, 64, 224, 224, 64, 3, 1, 1, 1), (64, 128, 28, 28, 128, 3, 1, 1, 1),
        (64, 256, 28, 28, 256, 3, 2, 1, 1), (32, 256, 56, 56, 64, 1, 1, 0, 1), (32, 256, 56, 56, 256, 3, 1, 1, 256),
        (256, 6, 14, 14, 16, 5, 1, 0, 1)]:
    n = min(n, a.batch)
    x = torch.randn(n, cin, h, w, device=dev, requires_grad=True)
    wt = (torch.randn(cout, cin // g, k, k, device=dev) * 0.05).requires_grad_()
    with torch.no_grad():
        y = F.conv2d(x, wt, None, s, p, 1, g)
    flop = 2.0 * y.numel() * (cin // g) * k * k
    gy = torch.randn_like(y)
    name = f"conv2d n{n} c{cin} {h}x{w} -> {cout} k{k} s{s} p{p} g{g}"
    def fwd():
        with torch.no_grad():
            F.conv2d(x, wt, None, s, p, 1, g)
    def fwdbwd():
        x.grad = None; wt.grad = None
        F.conv2d(x, wt, None, s, p, 1, g).backward(gy)
    for suffix, f, fl in [("fwd", fwd, flop), ("fwd+bwd", fwdbwd, 3 * flop)]:
        ms = timed(f); rows.append({"name": f"{name} {suffix}", "ms": ms, "tflops": fl / ms / 1e9})
n = min(16, a.batch)
x = torch.randn(n, 512, 32, 32, device=dev); w = torch.randn(512, 256, 2, 2, device=dev)
ms = timed(lambda: F.conv_transpose2d(x, w, None, 2))
rows.append({"name": f"conv_transpose2d n{n} 512 32x32 -> 256 k2 s2 fwd", "ms": ms, "tflops": 2.0 * n * 512 * 1024 * 256 * 4 / ms / 1e9})
n = min(64, a.batch)
x = torch.randn(n, 64, 112, 112, device=dev)
ms = timed(lambda: F.max_pool2d(x, 3, 2, 1))
rows.append({"name": f"max_pool2d n{n} 64 112x112 k3 s2 p1 fwd", "ms": ms, "tflops": n * 64 * 56 * 56 * 9 / ms / 1e9})
f = torch.randn(256, 128 * 128, device=dev)
ms = timed(lambda: f @ f.T)
rows.append({"name": "gram 1x256x128x128", "ms": ms, "tflops": 2.0 * 256 * 256 * 128 * 128 / ms / 1e9})
m = a.matmul
A = torch.randn(m, m, device=dev); B = torch.randn(m, m, device=dev)
ms = timed(lambda: A @ B)
rows.append({"name": f"matmul {m}^3", "ms": ms, "tflops": 2.0 * m ** 3 / ms / 1e9})
print(json.dumps({"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "rows": rows}, indent=2))
