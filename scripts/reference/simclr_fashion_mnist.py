"""PyTorch reference of the Fashion-MNIST SimCLR claim (configs/fashion_mnist_cnn.toml), to check
the claim outside the crate's engine.

Same recipe as the config: the `cnn_step` CNN of shared/BENCHMARKS.md (conv 32-64-128, 3×3,
batch norm, ReLU, 2×2 max-pool after the first two blocks, global average pool), a 128→128→64
projector (batch norm on its hidden layer with --projector-bn, on its output with
--projector-out-bn), NT-Xent at --tau (the config: 0.15), Adam lr 1e-3,
batch 256 (last partial batch dropped), cosine decay to 0 over the run; views: random resized
crop of scale 0.3–1 and ratio 3/4–4/3 resampled straight to --view-size pixels (bilinear,
align_corners = False), horizontal flip, brightness and contrast jitter 0.4. Evaluation: the
encoder output of the whole 28×28 images, standardised with the training mean and standard
deviation, multinomial logistic regression with λ = 1/(C·N), C = 1, by L-BFGS.

    python scripts/reference/simclr_fashion_mnist.py --epochs 40 --view-size 16 --projector-bn --tau 0.15

Needs numpy, torch and the Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist);
PyTorch is never a dependency of the crate. Prints the loss of every epoch, then the probe.
"""
import argparse, gzip, math, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int, default=40)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--view-size", type=int, default=28)
p.add_argument("--projector-bn", action="store_true")
p.add_argument("--projector-out-bn", action="store_true")
p.add_argument("--tau", type=float, default=0.1)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--data", default="/usr/share/datasets/fashion-mnist/")
args = p.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)
np.random.seed(args.seed)


def idx(name, offset):
    return np.frombuffer(gzip.open(args.data + name).read(), np.uint8, offset=offset)


def images(name):
    return torch.tensor(idx(name, 16).reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)


def labels(name):
    return torch.tensor(idx(name, 8).astype(np.int64))


xtr, ytr = images("train-images-idx3-ubyte.gz"), labels("train-labels-idx1-ubyte.gz")
xte, yte = images("t10k-images-idx3-ubyte.gz"), labels("t10k-labels-idx1-ubyte.gz")


def augment(x, size):
    """Random resized crop straight to size × size, flip, brightness/contrast jitter 0.4."""
    n = x.shape[0]
    area = torch.empty(n).uniform_(0.3, 1.0)
    ratio = torch.empty(n).uniform_(math.log(3 / 4), math.log(4 / 3)).exp()
    bw = (area * 784 * ratio).sqrt().round().clamp(1, 28)
    bh = (area * 784 / ratio).sqrt().round().clamp(1, 28)
    top = (torch.rand(n) * (28 - bh + 1)).floor()
    left = (torch.rand(n) * (28 - bw + 1)).floor()
    # The affine grid maps the output's [-1, 1] onto the box (pixel edges at ±1).
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = bw / 28
    theta[:, 0, 2] = (left + bw / 2) / 28 * 2 - 1
    theta[:, 1, 1] = bh / 28
    theta[:, 1, 2] = (top + bh / 2) / 28 * 2 - 1
    grid = F.affine_grid(theta, (n, 1, size, size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    flip = torch.rand(n) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    x = x * torch.empty(n, 1, 1, 1).uniform_(0.6, 1.4)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * torch.empty(n, 1, 1, 1).uniform_(0.6, 1.4) + mean


def block(i, o, pool):
    layers = [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
    return layers + ([nn.MaxPool2d(2)] if pool else [])


encoder = nn.Sequential(*block(1, 32, True), *block(32, 64, True), *block(64, 128, False),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
hidden = [nn.Linear(128, 128)] + ([nn.BatchNorm1d(128)] if args.projector_bn else [])
head = nn.Sequential(*hidden, nn.ReLU(), nn.Linear(128, 64),
                     *([nn.BatchNorm1d(64)] if args.projector_out_bn else []))
opt = torch.optim.Adam(list(encoder.parameters()) + list(head.parameters()), lr=1e-3)
B = 256
steps_per_epoch = len(xtr) // B
total = args.epochs * steps_per_epoch
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))


def nt_xent(z1, z2, tau):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.t() / tau
    n = z1.shape[0]
    s.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(s, target)


start = time.time()
for epoch in range(args.epochs):
    encoder.train()
    head.train()
    perm = torch.randperm(len(xtr))
    total_loss = 0.0
    for step in range(steps_per_epoch):
        xb = xtr[perm[step * B:(step + 1) * B]]
        z = head(encoder(torch.cat([augment(xb, args.view_size), augment(xb, args.view_size)])))
        loss = nt_xent(z[:B], z[B:], args.tau)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        total_loss += loss.item()
    print(f"epoch {epoch + 1} loss {total_loss / steps_per_epoch:.4f} {time.time() - start:.0f}s", flush=True)
train_seconds = time.time() - start

encoder.eval()
with torch.no_grad():
    ftr = torch.cat([encoder(xtr[i:i + 2000]) for i in range(0, len(xtr), 2000)]).double()
    fte = torch.cat([encoder(xte[i:i + 2000]) for i in range(0, len(xte), 2000)]).double()
mu, sd = ftr.mean(0), ftr.std(0, unbiased=False).clamp_min(1e-12)
ftr, fte = (ftr - mu) / sd, (fte - mu) / sd
W = torch.zeros(128, 10, dtype=torch.float64, requires_grad=True)
bias = torch.zeros(10, dtype=torch.float64, requires_grad=True)
lam = 1.0 / len(ftr)
lbfgs = torch.optim.LBFGS([W, bias], max_iter=5000, tolerance_grad=1e-6, tolerance_change=1e-10,
                          history_size=10, line_search_fn="strong_wolfe")


def closure():
    lbfgs.zero_grad()
    objective = F.cross_entropy(ftr @ W + bias, ytr) + 0.5 * lam * (W * W).sum()
    objective.backward()
    return objective


lbfgs.step(closure)
with torch.no_grad():
    train_acc = ((ftr @ W + bias).argmax(1) == ytr).double().mean().item()
    test_acc = ((fte @ W + bias).argmax(1) == yte).double().mean().item()
print(f"PyTorch reference, {args.epochs} epochs of {args.view_size}×{args.view_size} views, seed "
      f"{args.seed}: linear probe test {100 * test_acc:.2f}% train {100 * train_acc:.2f}% "
      f"(training {train_seconds:.0f} s, total {time.time() - start:.0f} s)")
