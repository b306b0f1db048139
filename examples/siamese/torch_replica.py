"""The siamese example's recipe in PyTorch, to tell fovea's limits from the method's.

The same encoder (three 3x3 conv-BN-ReLU stages, a pooling grid, a linear projection, L2
normalisation), P x K batches of the seen digits with batch-all triplet mining, Adam with
cosine decay, then one-shot tests on the digits never seen: the best squared-distance
threshold on 2,000 balanced pairs (an upper bound of the example's threshold figure), its
accuracy by pair of digits, and one-shot recognition over 200 episodes.

    python3 examples/siamese/torch_replica.py [--affine] [--seen 7] [--steps 600] ...

Variants tried beside the recipe (README, Metric learning): --inst, --loss supcon, --deskew,
--tta.
"""
import argparse, gzip, time
from collections import defaultdict

import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision.transforms.v2 as T

ap = argparse.ArgumentParser()
ap.add_argument("--mode", default="triplet", choices=["triplet", "softmax"])
ap.add_argument("--seen", type=int, default=7, help="digits 0..seen-1 train; 7-9 test")
ap.add_argument("--steps", type=int, default=600)
ap.add_argument("--width", type=int, default=32)
ap.add_argument("--dim", type=int, default=128)
ap.add_argument("--grid", type=int, default=3)
ap.add_argument("--margin", type=float, default=0.2)
ap.add_argument("--per-class", type=int, default=8)
ap.add_argument("--lr", type=float, default=2e-3)
ap.add_argument("--shift", type=int, default=2, help="whole-pixel shifts (without --affine)")
ap.add_argument("--affine", action="store_true", help="the example's affine distortions")
ap.add_argument("--data", default="assets/data/mnist-10k")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--inst", type=int, default=0,
                help="also this many seen images per step, two distorted views each, as identities")
ap.add_argument("--lam", type=float, default=1.0, help="weight of that instance loss")
ap.add_argument("--loss", default="triplet", choices=["triplet", "supcon"],
                help="batch-all triplets, or the supervised contrastive loss")
ap.add_argument("--tau", type=float, default=0.1, help="temperature of the contrastive loss")
ap.add_argument("--digit", type=float, default=1.0, help="weight of the digits' own loss")
ap.add_argument("--deskew", action="store_true", help="straighten every digit by its second moments (needs scipy)")
ap.add_argument("--tta", type=int, default=0, help="average the test embeddings over this many 1-pixel shifts")
a = ap.parse_args()
torch.manual_seed(a.seed)
rng = np.random.default_rng(a.seed)


def load(split):
    def idx(name, offset):
        return np.frombuffer(gzip.open(f"{a.data}/{split}-{name}").read(), np.uint8, offset=offset)
    x = idx("images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255
    return torch.tensor((x - 0.1307) / 0.3081), torch.tensor(idx("labels-idx1-ubyte.gz", 8).astype(np.int64))


def deskew(x):
    """Shears each digit upright about its centre of mass, by its second moments."""
    import scipy.ndimage as nd
    out = np.empty_like(x)
    ys_, xs_ = np.mgrid[:28, :28].astype(np.float32)
    for i, im in enumerate(x[:, 0]):
        w = im - im.min()
        t = w.sum()
        cy, cx = (w * ys_).sum() / t, (w * xs_).sum() / t
        vy = (w * (ys_ - cy) ** 2).sum() / t
        cyx = (w * (ys_ - cy) * (xs_ - cx)).sum() / t
        alpha = cyx / vy
        m = np.array([[1, 0], [alpha, 1]])
        off = np.array([cy, cx]) - m @ np.array([13.5, 13.5])
        out[i, 0] = nd.affine_transform(im, m, offset=off, order=1, cval=float(im.min()))
    return torch.tensor(out)
xtr, ytr = load("train")
xte, yte = load("t10k")
if a.deskew:
    xtr, xte = deskew(xtr.numpy()), deskew(xte.numpy())
xs, ys = xtr[ytr < a.seen], ytr[ytr < a.seen]
xu, yu = xte[yte >= 7], yte[yte >= 7]


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        w = a.width
        stage = lambda i, o: [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
        self.features = nn.Sequential(*stage(1, w), nn.MaxPool2d(2), *stage(w, 2 * w), nn.MaxPool2d(2),
                                      *stage(2 * w, 2 * w), nn.AdaptiveAvgPool2d(a.grid), nn.Flatten())
        self.embed = nn.Linear(2 * w * a.grid ** 2, a.dim)
        self.classify = nn.Linear(a.dim, a.seen)

    def forward(self, x):
        return F.normalize(self.embed(self.features(x)), dim=1)


affine = T.RandomAffine(degrees=15, translate=(3 / 28, 3 / 28), scale=(0.85, 1.15), shear=10)


def distort(x):
    bg = float(x.min())
    if a.affine:
        return torch.stack([affine(xi - bg) + bg for xi in x])
    out = torch.full_like(x, bg)
    for i in range(len(x)):
        dy, dx = (int(v) for v in rng.integers(-a.shift, a.shift + 1, 2))
        src = x[i, :, max(0, -dy):28 - max(0, dy), max(0, -dx):28 - max(0, dx)]
        out[i, :, max(0, dy):max(0, dy) + src.shape[1], max(0, dx):max(0, dx) + src.shape[2]] = src
    return out


def batch_all(e, y, margin):
    d = torch.cdist(e, e) ** 2
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(len(y), dtype=torch.bool)
    loss = F.relu(d[:, :, None] - d[:, None, :] + margin) * (pos[:, :, None] & ~same[:, None, :])
    return loss.sum() / (loss > 1e-16).sum().clamp(min=1)


def supcon(e, y, tau):
    """Khosla et al.'s supervised contrastive loss on L2-normalised embeddings."""
    s = e @ e.T / tau
    eye = torch.eye(len(y), dtype=torch.bool)
    s = s.masked_fill(eye, -1e9)
    logp = s - torch.logsumexp(s, 1, keepdim=True)
    pos = (y[:, None] == y[None, :]) & ~eye
    return -(logp * pos).sum(1).div(pos.sum(1).clamp(min=1)).mean()


net = Encoder()
opt = torch.optim.Adam(net.parameters(), lr=a.lr)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, a.steps, a.lr * 0.02)
groups = [np.nonzero(ys.numpy() == c)[0] for c in range(a.seen)]
start = time.time()
for t in range(a.steps):
    ix = np.concatenate([rng.choice(g, a.per_class, replace=False) for g in groups])
    x, y = distort(xs[ix]), ys[ix]
    if a.mode == "triplet":
        e = net(x)
        loss = a.digit * (batch_all(e, y, a.margin) if a.loss == "triplet" else supcon(e, y, a.tau))
        if a.inst:
            ii = rng.choice(len(xs), a.inst, replace=False)
            xi = torch.cat([distort(xs[ii]), distort(xs[ii])])
            yi = torch.arange(a.inst).repeat(2)
            ei = net(xi)
            loss = loss + a.lam * (batch_all(ei, yi, a.margin) if a.loss == "triplet" else supcon(ei, yi, a.tau))
    else:
        loss = F.cross_entropy(net.classify(net.embed(net.features(x))), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
net.eval()
with torch.no_grad():
    e = net(xu)
    if a.tta:
        acc = e.clone()
        for dy, dx in [(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1)][:a.tta]:
            acc += net(torch.roll(xu, shifts=(dy, dx), dims=(2, 3)))
        e = F.normalize(acc, dim=1)

pairs_rng = np.random.default_rng(1)
pairs = []
for k in range(2000):
    while True:
        i, j = (int(v) for v in pairs_rng.integers(0, len(yu), 2))
        if i != j and (yu[i] == yu[j]) == (k % 2 == 0):
            pairs.append((i, j, k % 2 == 0))
            break
dist = np.array([float(((e[i] - e[j]) ** 2).sum()) for i, j, _ in pairs])
same = np.array([s for *_, s in pairs])
accs = [((dist < t) == same).mean() for t in np.unique(dist)]
best = np.unique(dist)[int(np.argmax(accs))]
by_pair = defaultdict(list)
for (i, j, s), d in zip(pairs, dist):
    by_pair[tuple(sorted((int(yu[i]), int(yu[j]))))].append((d < best) == s)

ep_rng = np.random.default_rng(3)
hits = total = 0
for _ in range(200):
    refs = [int(ep_rng.choice(np.nonzero(yu.numpy() == c)[0])) for c in (7, 8, 9)]
    pred = torch.cdist(e, e[refs]).argmin(1).numpy() + 7
    rest = np.ones(len(yu), bool)
    rest[refs] = False
    hits += (pred[rest] == yu.numpy()[rest]).sum()
    total += rest.sum()
print(f"verification, best threshold on the unseen pairs: {100 * max(accs):.2f}%; "
      f"one-shot recognition {100 * hits / total:.2f}%; {time.time() - start:.0f} s")
print("by pair:", {k: f"{100 * np.mean(v):.0f}% of {len(v)}" for k, v in sorted(by_pair.items())})
