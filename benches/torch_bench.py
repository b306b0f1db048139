"""The rows of fovea-bench timed in PyTorch (FP32, TF32 off), for a side-by-side ratio on
the same machine: python3 benches/torch_bench.py [--batch N] [--matmul N]."""
import argparse, json, math, time
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=10**9)
ap.add_argument("--matmul", type=int, default=4096)
ap.add_argument("--repeats", type=int, default=5)
ap.add_argument("--only", default=None, help="run only the rows whose name contains one of these '|'-separated parts")
ap.add_argument("--unet-size", type=int, default=256)
a = ap.parse_args()
dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

def sync():
    if dev == "cuda":
        torch.cuda.synchronize()

def timed(f):
    # Warm up for a second, as fovea-bench does on a GPU (it keeps the clocks at boost).
    start = time.perf_counter()
    warm = []
    while True:
        t = time.perf_counter(); f(); sync(); warm.append((time.perf_counter() - t) * 1e3)
        if dev != "cuda" or time.perf_counter() - start > 1.0:
            break
    # Like fovea-bench: at least --repeats runs, or as many (up to 201) as fill 100 ms.
    typical = max(sorted(warm)[len(warm) // 2], 1e-3)
    runs = min(max(a.repeats, math.ceil(100.0 / typical)), max(201, a.repeats))
    ms = []
    for _ in range(runs):
        t = time.perf_counter(); f(); sync(); ms.append((time.perf_counter() - t) * 1e3)
    return sorted(ms)[len(ms) // 2]

def wanted(name):
    return a.only is None or any(part in name for part in a.only.split("|"))

class Rows(list):
    def append(self, row):
        if wanted(row["name"]):
            super().append(row)

rows = Rows()
for n, cin, h, w, cout, k, s, p, g in [(8, 64, 224, 224, 64, 3, 1, 1, 1), (64, 128, 28, 28, 128, 3, 1, 1, 1),
        (64, 256, 28, 28, 256, 3, 2, 1, 1), (32, 256, 56, 56, 64, 1, 1, 0, 1), (32, 256, 56, 56, 256, 3, 1, 1, 256),
        (256, 6, 14, 14, 16, 5, 1, 0, 1), (8, 256, 14, 14, 256, 3, 1, 1, 1), (8, 512, 7, 7, 512, 3, 1, 1, 1),
        (8, 256, 14, 14, 512, 3, 2, 1, 1)]:
    n = min(n, a.batch)
    name = f"conv2d n{n} c{cin} {h}x{w} -> {cout} k{k} s{s} p{p} g{g}"
    # Filtered rows allocate and compute nothing, as in fovea-bench.
    if not (wanted(f"{name} fwd") or wanted(f"{name} fwd+bwd")):
        continue
    x = torch.randn(n, cin, h, w, device=dev, requires_grad=True)
    wt = (torch.randn(cout, cin // g, k, k, device=dev) * 0.05).requires_grad_()
    with torch.no_grad():
        y = F.conv2d(x, wt, None, s, p, 1, g)
    flop = 2.0 * y.numel() * (cin // g) * k * k
    gy = torch.randn_like(y)
    def fwd():
        with torch.no_grad():
            F.conv2d(x, wt, None, s, p, 1, g)
    def fwdbwd():
        x.grad = None; wt.grad = None
        F.conv2d(x, wt, None, s, p, 1, g).backward(gy)
    for suffix, f, fl in [("fwd", fwd, flop), ("fwd+bwd", fwdbwd, 3 * flop)]:
        if wanted(f"{name} {suffix}"):
            ms = timed(f); rows.append({"name": f"{name} {suffix}", "ms": ms, "tflops": fl / ms / 1e9})
n = min(16, a.batch)
if wanted(f"conv_transpose2d n{n} 512 32x32 -> 256 k2 s2 fwd"):
    x = torch.randn(n, 512, 32, 32, device=dev); w = torch.randn(512, 256, 2, 2, device=dev)
    ms = timed(lambda: F.conv_transpose2d(x, w, None, 2))
    rows.append({"name": f"conv_transpose2d n{n} 512 32x32 -> 256 k2 s2 fwd", "ms": ms, "tflops": 2.0 * n * 512 * 1024 * 256 * 4 / ms / 1e9})
n = min(64, a.batch)
if wanted(f"max_pool2d n{n} 64 112x112 k3 s2 p1 fwd"):
    x = torch.randn(n, 64, 112, 112, device=dev)
    ms = timed(lambda: F.max_pool2d(x, 3, 2, 1))
    rows.append({"name": f"max_pool2d n{n} 64 112x112 k3 s2 p1 fwd", "ms": ms, "tflops": n * 64 * 56 * 56 * 9 / ms / 1e9})
if wanted(f"max_pool2d n{n} 64 112x112 k3 s2 p1 fwd+bwd"):
    x = torch.randn(n, 64, 112, 112, device=dev, requires_grad=True)
    gy = torch.randn(n, 64, 56, 56, device=dev)
    def pool_step():
        F.max_pool2d(x, 3, 2, 1).backward(gy)
        x.grad = None
    ms = timed(pool_step)
    rows.append({"name": f"max_pool2d n{n} 64 112x112 k3 s2 p1 fwd+bwd", "ms": ms, "tflops": None})
if wanted(f"batch_norm train n{n} 64 112x112 fwd+bwd"):
    x = torch.randn(n, 64, 112, 112, device=dev, requires_grad=True)
    gy = torch.randn(n, 64, 112, 112, device=dev)
    w = torch.ones(64, device=dev, requires_grad=True)
    b = torch.zeros(64, device=dev, requires_grad=True)
    def bn_step():
        F.batch_norm(x, None, None, w, b, training=True).backward(gy)
        x.grad = w.grad = b.grad = None
    ms = timed(bn_step)
    rows.append({"name": f"batch_norm train n{n} 64 112x112 fwd+bwd", "ms": ms, "tflops": None})
if wanted("gram 1x256x128x128"):
    f = torch.randn(256, 128 * 128, device=dev)
    ms = timed(lambda: f @ f.T)
    rows.append({"name": "gram 1x256x128x128", "ms": ms, "tflops": 2.0 * 256 * 256 * 128 * 128 / ms / 1e9})
m = a.matmul
if wanted(f"matmul {m}^3"):
    A = torch.randn(m, m, device=dev); B = torch.randn(m, m, device=dev)
    ms = timed(lambda: A @ B)
    rows.append({"name": f"matmul {m}^3", "ms": ms, "tflops": 2.0 * m ** 3 / ms / 1e9})
    if dev == "cuda" and wanted(f"matmul {m}^3 autocast"):
        with torch.autocast("cuda", dtype=torch.float16):
            ms = timed(lambda: A @ B)
        rows.append({"name": f"matmul {m}^3 autocast", "ms": ms, "tflops": 2.0 * m ** 3 / ms / 1e9})
x = torch.ones(1, device=dev)
def tiny():
    y = x
    for _ in range(1000):
        y = y + 1.0
if wanted("dispatch: 1000 one-element ops (ms = us per op)"):
    ms = timed(tiny)
    rows.append({"name": "dispatch: 1000 one-element ops (ms = us per op)", "ms": ms, "tflops": None})
if wanted("latency: one-element op + sync"):
    ms = timed(lambda: x + 1.0)
    rows.append({"name": "latency: one-element op + sync", "ms": ms, "tflops": None})

# One LeNet-5 training step at batch 256 (fovea's modern LeNet: the same layers and Adam).
lenet = torch.nn.Sequential(
    torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
    torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Dropout(0.1),
    torch.nn.Linear(120, 84), torch.nn.ReLU(), torch.nn.Linear(84, 10)).to(dev)
opt = torch.optim.Adam(lenet.parameters())
xb = torch.randn(256, 1, 28, 28, device=dev); yb = torch.randint(0, 10, (256,), device=dev)
def lenet_step():
    opt.zero_grad()
    F.cross_entropy(lenet(xb), yb).backward()
    opt.step()
if wanted("lenet5 training step batch 256"):
    ms = timed(lenet_step)
    rows.append({"name": "lenet5 training step batch 256", "ms": ms, "tflops": None})

# One style-transfer step at 512x512 on VGG19's trunk (random weights: the time does not
# depend on them): relu4_2 content, relu1_1..relu5_1 Gram style costs, Adam on the image.
cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
layers, cin = [], 3
for v in cfg:
    if v == "M":
        layers.append(torch.nn.MaxPool2d(2))
    else:
        layers += [torch.nn.Conv2d(cin, v, 3, padding=1), torch.nn.ReLU()]
        cin = v
vgg = torch.nn.Sequential(*layers).to(dev).eval()
for q in vgg.parameters():
    q.requires_grad_(False)
# Indices of relu1_1, relu2_1, relu3_1, relu4_1, relu4_2, relu5_1 in torchvision's VGG19.
style_idx, content_idx = [1, 6, 11, 20, 29], 22
def features(img):
    out = {}
    h = img
    for i, layer in enumerate(vgg):
        h = layer(h)
        if i in style_idx or i == content_idx:
            out[i] = h
        if i == max(style_idx):
            break
    return out
def gram(f):
    n, c, hh, ww = f.shape
    f = f.reshape(n, c, hh * ww)
    return f @ f.transpose(1, 2)
with torch.no_grad():
    target = features(torch.randn(1, 3, 512, 512, device=dev) * 50)
    grams = {i: gram(target[i]) for i in style_idx}
g = (torch.randn(1, 3, 512, 512, device=dev) * 50).requires_grad_()
gopt = torch.optim.Adam([g])
def style_step():
    gopt.zero_grad()
    f = features(g)
    j = 0.5 * ((f[content_idx] - target[content_idx]) ** 2).sum()
    for i in style_idx:
        c, hw = f[i].shape[1], f[i].shape[2] * f[i].shape[3]
        j = j + 1e4 / 5 * ((gram(f[i]) - grams[i]) ** 2).sum() / (4.0 * c * c * hw * hw)
    j.backward()
    gopt.step()
if wanted("style transfer step 512x512 vgg19 (relu4_2 + 5 style layers)"):
    ms = timed(style_step)
    rows.append({"name": "style transfer step 512x512 vgg19 (relu4_2 + 5 style layers)", "ms": ms, "tflops": None})
if dev == "cuda":
    rows.append({"name": "peak memory after the style rows (MiB)", "ms": torch.cuda.max_memory_allocated() / 2**20, "tflops": None})

# 1-D and 3-D convolution, as fovea-bench's nd rows: forward and forward + backward.
n1, n3 = min(32, a.batch), min(4, a.batch)
for name, xs, ws, conv in [(f"conv1d n{n1} c64 4096 -> 64 k9 p4", (n1, 64, 4096), (64, 64, 9), lambda x, w: F.conv1d(x, w, None, 1, 4)),
                           (f"conv3d n{n3} c64 16x56x56 -> 64 k3 p1", (n3, 64, 16, 56, 56), (64, 64, 3, 3, 3), lambda x, w: F.conv3d(x, w, None, 1, 1))]:
    if not (wanted(f"{name} fwd") or wanted(f"{name} fwd+bwd")):
        continue
    x = torch.randn(*xs, device=dev, requires_grad=True)
    wt = (torch.randn(*ws, device=dev) * 0.05).requires_grad_()
    with torch.no_grad():
        y = conv(x, wt)
    flop = 2.0 * y.numel() * math.prod(ws[1:])
    gy = torch.randn_like(y)
    def fwd():
        with torch.no_grad():
            conv(x, wt)
    def fwdbwd():
        x.grad = None; wt.grad = None
        conv(x, wt).backward(gy)
    for suffix, f, fl in [("fwd", fwd, flop), ("fwd+bwd", fwdbwd, 3 * flop)]:
        if wanted(f"{name} {suffix}"):
            ms = timed(f); rows.append({"name": f"{name} {suffix}", "ms": ms, "tflops": fl / ms / 1e9})

# The zoo's networks at 224x224, as fovea-bench times them: a training step (batch
# statistics, cross-entropy, backward, SGD momentum 0.9) and an inference pass (eval,
# no_grad); ResNet-18 and MobileNetV2 at batch 64, VGG-16 at 32, capped by --batch.
import torchvision
for net, batch, build in [("resnet18", 64, torchvision.models.resnet18),
                          ("mobilenet_v2", 64, torchvision.models.mobilenet_v2),
                          ("vgg16", 32, torchvision.models.vgg16)]:
    n = min(batch, a.batch)
    train_name, infer_name = f"{net} training step 224x224 batch {n}", f"{net} inference 224x224 batch {n}"
    if not (wanted(train_name) or wanted(infer_name)):
        continue
    model = build().to(dev)
    xb = torch.randn(n, 3, 224, 224, device=dev)
    yb = torch.tensor([(i * 37) % 1000 for i in range(n)], device=dev)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    def train_step():
        sgd.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        sgd.step()
    def infer():
        with torch.no_grad():
            model(xb)
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # Mixed precision as fovea-bench's autocast row: torch.autocast (f16) and a GradScaler.
    scaler = torch.amp.GradScaler("cuda") if dev == "cuda" else None
    def amp_step():
        sgd.zero_grad()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = F.cross_entropy(model(xb), yb)
        scaler.scale(loss).backward()
        scaler.step(sgd)
        scaler.update()
    steps = [(train_name, train_step, model.train), (infer_name, infer, model.eval)]
    if dev == "cuda":
        steps.append((f"{train_name} autocast", amp_step, model.train))
    for name, f, mode in steps:
        if wanted(name):
            mode()
            if dev == "cuda":
                torch.cuda.reset_peak_memory_stats()
            ms = timed(f)
            peak = torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None
            rows.append({"name": name, "ms": ms, "tflops": None, "peak_mib": peak})
    del model, sgd

# Detection's rows (fovea-bench's detection_rows): the course's sliding-window classifier over
# a 64x64 image, naive (every 14x14 window cropped and classified) and convolutional (the
# fully connected layers as convolutions, one pass); one training step of the detect
# example's detector (tiny darknet, YOLO head and loss).
def detection_rows():
    nn = torch.nn
    conv1 = nn.Conv2d(3, 16, 5).to(dev)
    fc1, fc2, fc3 = nn.Linear(400, 400).to(dev), nn.Linear(400, 400).to(dev), nn.Linear(400, 4).to(dev)
    def classify(w):
        h = F.max_pool2d(F.relu(conv1(w)), 2).flatten(1)
        return fc3(F.relu(fc2(F.relu(fc1(h)))))
    img = torch.randn(1, 3, 64, 64, device=dev)
    def naive():
        with torch.no_grad():
            crops = img.unfold(2, 14, 2).unfold(3, 14, 2)  # [1, 3, 26, 26, 14, 14]
            crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, 14, 14)
            classify(crops).reshape(1, 26, 26, 4).permute(0, 3, 1, 2)
    w1, w2, w3 = fc1.weight.reshape(400, 16, 5, 5), fc2.weight.reshape(400, 400, 1, 1), fc3.weight.reshape(4, 400, 1, 1)
    def convolutional():
        with torch.no_grad():
            h = F.max_pool2d(F.relu(conv1(img)), 2)
            h = F.relu(F.conv2d(h, w1, fc1.bias))
            F.conv2d(F.relu(F.conv2d(h, w2, fc2.bias)), w3, fc3.bias)
    for name, f in [("sliding windows naive: 64x64x3, 26x26 windows of 14x14 (crop + classify)", naive),
                    ("sliding windows convolutional: 64x64x3, 26x26 windows in one pass", convolutional)]:
        if wanted(name):
            rows.append({"name": name, "ms": timed(f), "tflops": None})

    width, n, S, B, C = 8, min(32, a.batch), 12, 3, 10
    step_name = f"yolo detector training step batch {n} 96x96 (tiny darknet width {width}, 3 anchors, 10 classes, Adam)"
    if not wanted(step_name):
        return
    def dconv(cin, cout, k):
        return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1)]
    w = width
    net = nn.Sequential(*dconv(1, w, 3), nn.MaxPool2d(2), *dconv(w, 2 * w, 3), nn.MaxPool2d(2),
                        *dconv(2 * w, 4 * w, 3), nn.MaxPool2d(2), *dconv(4 * w, 8 * w, 3), *dconv(8 * w, 4 * w, 1),
                        *dconv(4 * w, 8 * w, 3), nn.Conv2d(8 * w, B * (5 + C), 1)).to(dev)
    opt = torch.optim.Adam(net.parameters())
    x = torch.rand(n, 1, 96, 96, device=dev)
    # Targets of the same shapes as fovea's (values do not change the time): three objects
    # per image in random slots.
    g = torch.Generator().manual_seed(0)
    obj = torch.zeros(n, B, 1, S, S)
    for i in range(n):
        for _ in range(3):
            obj[i, torch.randint(B, (1,), generator=g), 0, torch.randint(S, (1,), generator=g), torch.randint(S, (1,), generator=g)] = 1.0
    box_t = torch.rand(n, B, 4, S, S, generator=g) * obj
    onehot = F.one_hot(torch.randint(C, (n, B, S, S), generator=g), C).permute(0, 1, 4, 2, 3).float() * obj
    obj, box_t, onehot = obj.to(dev), box_t.to(dev), onehot.to(dev)
    noobj = (1.0 - obj) * 0.5
    def step():
        opt.zero_grad()
        p = net(x).reshape(n, B, 5 + C, S, S)
        pc = p[:, :, 0:1]
        bce = F.relu(pc) - pc * obj + torch.log1p(torch.exp(-pc.abs()))
        coord = ((torch.cat([p[:, :, 1:3].sigmoid(), p[:, :, 3:5]], 2) - box_t) ** 2 * obj).sum() * 5.0
        cls = -(F.log_softmax(p[:, :, 5:], 2) * onehot).sum()
        ((coord + (bce * obj).sum() + (bce * noobj).sum() + cls) / n).backward()
        opt.step()
    rows.append({"name": step_name, "ms": timed(step), "tflops": None})


detection_rows()

# One U-Net training step (milesial/Pytorch-UNet's network, as fovea's UNet: width 64,
# depth 4, transposed convolutions; 3 channels in, 2 classes) at batch 8, per-pixel
# cross-entropy and Adam.
class DoubleConv(torch.nn.Sequential):
    def __init__(self, i, o, m=None):
        m = m or o
        super().__init__(torch.nn.Conv2d(i, m, 3, padding=1, bias=False), torch.nn.BatchNorm2d(m), torch.nn.ReLU(inplace=True),
                         torch.nn.Conv2d(m, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU(inplace=True))
class UNet(torch.nn.Module):
    def __init__(self, cin, classes, width=64, depth=4):
        super().__init__()
        c = [width << i for i in range(depth + 1)]
        self.inc = DoubleConv(cin, c[0])
        self.downs = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.MaxPool2d(2), DoubleConv(c[i - 1], c[i])) for i in range(1, depth + 1))
        self.ups = torch.nn.ModuleList(torch.nn.ConvTranspose2d(c[k], c[k] // 2, 2, stride=2) for k in range(depth, 0, -1))
        self.convs = torch.nn.ModuleList(DoubleConv(c[k], c[k - 1]) for k in range(depth, 0, -1))
        self.outc = torch.nn.Conv2d(c[0], classes, 1)
    def forward(self, x):
        xs = [self.inc(x)]
        for d in self.downs:
            xs.append(d(xs[-1]))
        h = xs.pop()
        for up, conv in zip(self.ups, self.convs):
            h = conv(torch.cat([xs.pop(), up(h)], 1))
        return self.outc(h)
n, side = min(8, a.batch), a.unet_size
unet_name = f"unet training step {side}x{side} batch {n} (width 64, depth 4)"
if wanted(unet_name):
    unet = UNet(3, 2).to(dev)
    uopt = torch.optim.Adam(unet.parameters())
    ux = torch.randn(n, 3, side, side, device=dev); ut = torch.randint(0, 2, (n, side, side), device=dev)
    def unet_step():
        uopt.zero_grad()
        F.cross_entropy(unet(ux), ut).backward()
        uopt.step()
    ms = timed(unet_step)
    rows.append({"name": unet_name, "ms": ms, "tflops": None})

# The face nets' forward passes, from the independent reference written for the tests.
def face_rows():
    import os, sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, os.path.join(root, "tests", "fixtures"))
    # The reference turns autograd off when imported (it only runs forwards); the rows
    # after these train, so give it back.
    grad = torch.is_grad_enabled()
    import faceapi_reference as ref
    torch.set_grad_enabled(grad)
    from safetensors.torch import load_file
    for name, side, net, file in [
            ("face descriptor 150x150 batch 1 (dlib resnet)", 150, ref.recognition, "face_recognition"),
            ("tiny face detector 416x416 batch 1", 416, ref.detector, "tiny_face_detector")]:
        if not wanted(name):
            continue
        w = {k: v.to(dev) for k, v in load_file(os.path.join(root, "assets", "weights", "faces", file + ".safetensors")).items()}
        x = torch.randn(1, 3, side, side, device=dev)
        def fwd():
            with torch.no_grad():
                net(w, x)
        rows.append({"name": name, "ms": timed(fwd), "tflops": None})


face_rows()

# One triplet training step of examples/siamese's encoder (3×3 conv-BN-ReLU stages of 16,
# 32, 32 channels, max pooling after the first two, global average pooling, linear to 64,
# L2 normalisation) on 7 classes × 8 digits, batch-hard mining on squared distances, Adam.
class Siamese(torch.nn.Module):
    def __init__(self, w=16, dim=64):
        super().__init__()
        def stage(i, o):
            return [torch.nn.Conv2d(i, o, 3, padding=1, bias=False), torch.nn.BatchNorm2d(o), torch.nn.ReLU()]
        self.features = torch.nn.Sequential(*stage(1, w), torch.nn.MaxPool2d(2), *stage(w, 2 * w), torch.nn.MaxPool2d(2),
                                            *stage(2 * w, 2 * w), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.embed = torch.nn.Linear(2 * w, dim)
    def forward(self, x):
        return F.normalize(self.embed(self.features(x)), dim=1)
k = min(8, max(a.batch // 7, 1))
sn = 7 * k
siamese_name = f"siamese triplet step batch {sn} 28x28 (width 16, dim 64, batch-hard)"
if wanted(siamese_name):
    snet = Siamese().to(dev)
    sopt = torch.optim.Adam(snet.parameters())
    sx = torch.randn(sn, 1, 28, 28, device=dev)
    sl = torch.arange(sn, device=dev) // k
    same = sl[:, None] == sl[None, :]
    eye = torch.eye(sn, dtype=torch.bool, device=dev)
    def siamese_step():
        sopt.zero_grad()
        e = snet(sx)
        d = torch.cdist(e, e).pow(2)
        hardest_pos = d.masked_fill(~same | eye, float("-inf")).amax(1)
        hardest_neg = d.masked_fill(same, float("inf")).amin(1)
        F.relu(hardest_pos - hardest_neg + 0.2).mean().backward()
        sopt.step()
    rows.append({"name": siamese_name, "ms": timed(siamese_step), "tflops": None})

print(json.dumps({"device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "rows": rows}, indent=2))
