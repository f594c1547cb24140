"""PyTorch reference of the Fashion-MNIST SimCLR claim (configs/fashion_mnist_cnn.toml), to check
the claim outside the crate's engine.

Same recipe as the config: the `cnn_step` CNN of shared/BENCHMARKS.md (conv 32-64-128, 3×3,
batch norm, ReLU, 2×2 max-pool after the first two blocks, global average pool), a 128→128→64
projector (batch norm on its hidden layer with --projector-bn, on its output with
--projector-out-bn), NT-Xent at --tau (the config: 0.15), Adam lr 1e-3,
batch 256 (last partial batch dropped), cosine decay to 0 over the run; views: random resized
crop of scale 0.3–1 and ratio 3/4–4/3 drawn as torchvision draws it (--crop, below) and
resampled straight to --view-size pixels (bilinear within the box, align_corners = False: the
crate's crop to 1e-6), horizontal flip, brightness and contrast jitter 0.4. Evaluation: the
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
p.add_argument("--crop", choices=["torchvision", "clamp"], default="torchvision")
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


def crop_boxes(n):
    """Random resized crop boxes (top, left, height, width) of scale 0.3-1, ratio 3/4-4/3.

    `torchvision` (the default, and what the crate does): torchvision's RandomResizedCrop, up to
    10 draws per image until the box fits, else the whole image. `clamp` (this script's draw up
    to session 7): one draw, its sides clamped to the image, which turns the draws that do not
    fit into tall or wide boxes of (nearly) full height or width.
    """
    tries = 10 if args.crop == "torchvision" else 1
    area = torch.empty(n, tries).uniform_(0.3, 1.0) * 784
    ratio = torch.empty(n, tries).uniform_(math.log(3 / 4), math.log(4 / 3)).exp()
    bw, bh = (area * ratio).sqrt().round(), (area / ratio).sqrt().round()
    if args.crop == "torchvision":
        fits = (bw >= 1) & (bw <= 28) & (bh >= 1) & (bh <= 28)
        first = fits.int().argmax(1, keepdim=True)  # the first draw that fits
        bw, bh = bw.gather(1, first)[:, 0], bh.gather(1, first)[:, 0]
        none = ~fits.any(1)
        bw[none], bh[none] = 28.0, 28.0
    else:
        bw, bh = bw[:, 0].clamp(1, 28), bh[:, 0].clamp(1, 28)
    top = (torch.rand(n) * (28 - bh + 1)).floor()
    left = (torch.rand(n) * (28 - bw + 1)).floor()
    return top, left, bh, bw


def augment(x, size):
    """Random resized crop straight to size × size, flip, brightness/contrast jitter 0.4."""
    n = x.shape[0]
    top, left, bh, bw = crop_boxes(n)
    # Bilinear resampling of the box alone, pixel centres aligned as with align_corners = False
    # and source coordinates clamped to the box (the crate's crop_resize): the grid addresses
    # pixel centres of the whole image (align_corners = True), so no tap leaves the box.
    o = torch.arange(size, dtype=torch.float32) + 0.5
    sy = (o[None] * bh[:, None] / size - 0.5).clamp_min(0).minimum(bh[:, None] - 1) + top[:, None]
    sx = (o[None] * bw[:, None] / size - 0.5).clamp_min(0).minimum(bw[:, None] - 1) + left[:, None]
    grid = torch.stack([(2 * sx / 27 - 1)[:, None, :].expand(n, size, size),
                        (2 * sy / 27 - 1)[:, :, None].expand(n, size, size)], dim=3)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
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
