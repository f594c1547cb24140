"""PyTorch reference of the SupCon-on-digits claim (configs/supcon_digits.toml), with the crate's
geometry metric, to check the claim outside the crate's engine.

Setup as in the config: MLP 64→256→256 (ReLU), linear projector 256→128, Adam lr 1e-3, batch 256
(last partial batch dropped), 200 epochs, τ = 0.1, two views per image (integer shift of −1/0/+1
pixel with zero fill, pixel drop 0.1, Gaussian noise σ 0.1); the digits split of the crate (rows
with index % 5 == 0 are the test set); a linear probe on the encoder output (L-BFGS, C = 1).

    python scripts/reference/supcon_digits.py --seed S [--epochs 200] [--tau 0.1] [--loss simclr]
        [--shift 1] [--drop 0.1] [--noise 0.1]   (0 0 0: no augmentation, `data.augment = "none"`)

Needs numpy and torch (a scratch virtual environment; PyTorch is never a dependency of the
crate). Prints one JSON line: the probe accuracy and, for the normalised projector output z and
the encoder output h on train and test, `class_collapse` as `src/eval/geometry.rs` computes it
(within-class variance `wcv`, centred class-mean cosines `mean`/`min`/`max`, `etf` distance, and
`gmean`, the norm of the mean class mean: the shared offset).
"""
import argparse, gzip, json, math, os, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)

p = argparse.ArgumentParser()
p.add_argument("--seed", type=int, default=0)
p.add_argument("--epochs", type=int, default=200)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--tau", type=float, default=0.1)
p.add_argument("--drop-last", type=int, default=1)
p.add_argument("--cosine", type=int, default=0)
p.add_argument("--final-lr", type=float, default=0.0)
p.add_argument("--loss", default="supcon")  # supcon | simclr
p.add_argument("--shift", type=int, default=1)
p.add_argument("--drop", type=float, default=0.1)
p.add_argument("--noise", type=float, default=0.1)
p.add_argument("--out", default="")
p.add_argument("--log-every", type=int, default=0)
args = p.parse_args()
torch.manual_seed(args.seed)
np.random.seed(args.seed)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
raw = np.loadtxt(gzip.open(os.path.join(ROOT, "datasets", "digits.csv.gz"), "rt"), delimiter=",", dtype=np.int64)
X = torch.tensor(raw[:, :64] / 16.0, dtype=torch.float32)
Y = torch.tensor(raw[:, 64])
idx = np.arange(len(raw))
te, tr = idx % 5 == 0, idx % 5 != 0
Xtr, Ytr, Xte, Yte = X[tr], Y[tr], X[te], Y[te]


def augment(x):
    """x (B, 64) -> shifted by dy, dx in {-s..s} (zero fill), pixel drop, Gaussian noise."""
    b = x.shape[0]
    s = args.shift
    img = F.pad(x.view(b, 8, 8), (s, s, s, s))  # (B, 8 + 2s, 8 + 2s)
    dy = torch.randint(-args.shift, args.shift + 1, (b,))
    dx = torch.randint(-args.shift, args.shift + 1, (b,))
    rows = (torch.arange(8)[None, :] + s - dy[:, None])  # out[r] = in[r - dy]
    cols = (torch.arange(8)[None, :] + s - dx[:, None])
    out = img[torch.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
    out = out.reshape(b, 64)
    out = out * (torch.rand_like(out) >= args.drop)
    return out + args.noise * torch.randn_like(out)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU())
        self.proj = nn.Linear(256, 128)

    def forward(self, x):
        h = self.enc(x)
        return h, self.proj(h)


def supcon(z, labels, tau):
    """Khosla et al. L_out, SupContrast 'all' mode without the tau/base factor. z (R, d) rows."""
    z = F.normalize(z, dim=1)
    r = z.shape[0]
    s = z @ z.T / tau
    eye = torch.eye(r, dtype=torch.bool)
    s = s.masked_fill(eye, -float("inf"))
    log_prob = s - torch.logsumexp(s, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    mean_pos = (log_prob.masked_fill(~pos, 0).sum(1)) / pos.sum(1)
    return -mean_pos.mean()


def collapse(emb, labels, k=10):
    """class_collapse of src/eval/geometry.rs, in float64."""
    z = emb.double()
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-300)
    means = torch.stack([z[labels == c].mean(0) for c in range(k)])
    wcv = np.mean([((z[labels == c] - means[c]) ** 2).sum(1).mean().item() for c in range(k)])
    m = means - means.mean(0)
    m = m / m.norm(dim=1, keepdim=True)
    g = m @ m.T
    off = g[~torch.eye(k, dtype=torch.bool)]
    etf = (k / (k - 1)) * (torch.eye(k) - 1.0 / k)
    return dict(wcv=wcv, mean=off.mean().item(), min=off.min().item(), max=off.max().item(),
                etf=(g - etf.double()).norm().item(),
                mean_norm=means.norm(dim=1).mean().item(), gmean=means.mean(0).norm().item(),
                raw_max=(F.normalize(means, dim=1) @ F.normalize(means, dim=1).T)[~torch.eye(k, dtype=torch.bool)].max().item())


def probe(htr, ytr, hte, yte, C=1.0):
    mu, sd = htr.mean(0), htr.std(0).clamp_min(1e-8)
    a, b = ((htr - mu) / sd).double(), ((hte - mu) / sd).double()
    W = torch.zeros(a.shape[1], 10, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(10, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([W, c], max_iter=500, line_search_fn="strong_wolfe", tolerance_grad=1e-9)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(a @ W + c, ytr, reduction="sum") + 0.5 / C * (W ** 2).sum()
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad():
        return ((b @ W + c).argmax(1) == yte).double().mean().item()


model = Model()
opt = torch.optim.Adam(model.parameters(), lr=args.lr)
n = len(Xtr)
steps_per_epoch = n // args.batch if args.drop_last else math.ceil(n / args.batch)
total = steps_per_epoch * args.epochs
step = 0
t0 = time.time()
if args.log_every:
    with torch.no_grad():
        print(json.dumps(dict(epoch=0, train_z=collapse(model(Xtr)[1], Ytr))), flush=True)
for epoch in range(args.epochs):
    perm = torch.randperm(n)
    for bi in range(steps_per_epoch):
        ids = perm[bi * args.batch:(bi + 1) * args.batch]
        x, y = Xtr[ids], Ytr[ids]
        v = torch.cat([augment(x), augment(x)])
        if args.cosine:
            lr = args.final_lr + 0.5 * (args.lr - args.final_lr) * (1 + math.cos(math.pi * step / total))
            for gp in opt.param_groups:
                gp["lr"] = lr
        _, z = model(v)
        if args.loss == "supcon":
            loss = supcon(z, torch.cat([y, y]), args.tau)
        else:
            lab = torch.arange(len(ids))
            loss = supcon(z, torch.cat([lab, lab]), args.tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    if args.log_every and (epoch == 0 or (epoch + 1) % args.log_every == 0):
        with torch.no_grad():
            _, zt = model(Xtr)
        c = collapse(zt, Ytr)
        print(json.dumps(dict(epoch=epoch + 1, loss=loss.item(), train_z=c)), flush=True)

model.eval()
with torch.no_grad():
    htr, ztr = model(Xtr)
    hte, zte = model(Xte)
res = dict(seed=args.seed, epochs=args.epochs, secs=round(time.time() - t0, 1), loss=loss.item(),
           probe=probe(htr, Ytr, hte, Yte),
           z_train=collapse(ztr, Ytr), z_test=collapse(zte, Yte),
           h_train=collapse(htr, Ytr), h_test=collapse(hte, Yte))
print(json.dumps(res))
if args.out:
    np.save(args.out + "_ztr.npy", ztr.numpy()); np.save(args.out + "_zte.npy", zte.numpy())
