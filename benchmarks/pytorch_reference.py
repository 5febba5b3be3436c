#!/usr/bin/env python3
"""The peer: the engine's benchmark network and FPTT step re-expressed in PyTorch, the way the
authors' code runs it (one optimizer step per time step, the FPTT regulariser as an autograd term,
the post-step updates of lambda and W-bar as Python loops over the named parameters).

Two modes:

  check  replays the sequence `fptt bench peer-check --out DIR` wrote: loads the engine's start
         weights and data, runs the same T FPTT steps here, and compares every tensor with the
         engine's state after them (weights, W-bar, lambda, Adamax moments, the auxiliary table).
         Exits 1 when a tensor is off by more than --tol (relative to the tensor's largest value).

  bench  times FPTT steps of the same network for each hidden size and batch and writes a CSV row
         after every shape (implementation, shape, ms per step, sample-steps/s, device, versions).
         First it measures the vendor library's f32 matrix-product rate on the same device
         (`torch.matmul`, n x n x n, TF32 off: cuBLAS on CUDA), and every row carries it as
         vendor_matmul_n, vendor_matmul_gflop_per_s and vendor_matmul_precision, the ceiling
         side_by_side.py holds the engine's step against.

The mathematics is docs/method.md (sections 1-5), written independently of the engine's
WGSL: adaptive LTC layer with separate input and recurrent maps, LTC readout, multi-Gaussian
surrogate, classification loss with the auxiliary table q, FPTT update with Adamax and global-norm
clipping. Needs torch, numpy and safetensors (see benchmarks/README.md).
"""

import argparse
import csv
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.numpy import load_file

B0, BETA_ADAPT = 0.1, 1.8
GAMMA, LENS, HIGHT, SCALE = 0.5, 0.3, 0.15, 6.0  # surrogate psi (docs/method.md §2)


def gaussian(x, mu, sigma):
    return torch.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))


class SpikeAct(torch.autograd.Function):
    """H(v) forward (strictly v > 0), the multi-Gaussian psi(v) backward."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        psi = GAMMA * (
            (1 + HIGHT) * gaussian(v, 0.0, LENS)
            - HIGHT * gaussian(v, LENS, SCALE * LENS)
            - HIGHT * gaussian(v, -LENS, SCALE * LENS)
        )
        return grad * psi


class LtcNet(torch.nn.Module):
    """One adaptive LTC layer (separate input and recurrent maps) and the LTC readout, with the
    authors' tensor names so the engine's checkpoint loads unchanged."""

    def __init__(self, inputs, hidden, classes):
        super().__init__()
        self.hidden, self.classes = hidden, classes
        self.layer1_x = torch.nn.Linear(inputs, hidden)
        self.layer1_r = torch.nn.Linear(hidden, hidden)
        self.layer1_tauM = torch.nn.Linear(2 * hidden, hidden)
        self.layer1_tauAdp = torch.nn.Linear(2 * hidden, hidden)
        self.layer3_x = torch.nn.Linear(hidden, classes)
        self.layer3_tauM = torch.nn.Linear(2 * classes, classes)
        self.act1 = torch.nn.Module()
        self.act1.alpha = torch.nn.Parameter(torch.tensor(1.0))
        self.act2 = torch.nn.Module()
        self.act2.alpha = torch.nn.Parameter(torch.tensor(1.0))
        self.act3 = torch.nn.Module()
        self.act3.alpha = torch.nn.Parameter(torch.tensor(1.0))
        # Spec section 1 initialisation (only used by `bench`; `check` loads the engine's weights).
        for lin in (self.layer1_x, self.layer1_tauM, self.layer1_tauAdp, self.layer3_x, self.layer3_tauM):
            torch.nn.init.xavier_normal_(lin.weight)
            torch.nn.init.zeros_(lin.bias)
        torch.nn.init.orthogonal_(self.layer1_r.weight)

    def step(self, x, state):
        """One time step from `state` = (m, s, b, o); returns the new state."""
        m, s, b, o = state
        d = self.layer1_x(x) + self.layer1_r(s)
        tau_m = torch.sigmoid(self.act1.alpha * self.layer1_tauM(torch.cat((d, m), 1)))
        tau_a = torch.sigmoid(self.act2.alpha * self.layer1_tauAdp(torch.cat((d, b), 1)))
        b = tau_a * b + (1 - tau_a) * s
        theta = B0 + BETA_ADAPT * b
        u = m + tau_m * (d - m)
        s = SpikeAct.apply(u - theta)
        m = (1 - s) * u
        z = self.layer3_x(s)
        tau_o = torch.sigmoid(self.act3.alpha * self.layer3_tauM(torch.cat((z, o), 1)))
        o = (1 - tau_o) * o + tau_o * z
        return m, s, b, o


class FpttTrainer:
    """FPTT with truncation 1: an Adamax step after every time step (docs/method.md §4, §5)."""

    def __init__(self, net, steps, lr=1e-3, alpha=0.1, beta=0.5, clip=1.0):
        self.net, self.steps = net, steps
        self.alpha, self.beta, self.clip = alpha, beta, clip
        self.optimizer = torch.optim.Adamax(net.parameters(), lr=lr)
        self.named = list(net.named_parameters())
        self.wbar = {n: p.detach().clone() for n, p in self.named}
        self.lam = {n: torch.zeros_like(p) for n, p in self.named}
        c = net.classes
        self.q = torch.zeros(c, steps, c, device=next(net.parameters()).device)

    def regulariser(self):
        r = 0.0
        for n, p in self.named:
            r = r + 0.5 * self.alpha * (p - self.wbar[n]).pow(2).sum() - (p * self.lam[n]).sum()
        return r

    def task_loss(self, o, labels, t):
        w = (t + 1) / self.steps
        logp = F.log_softmax(o, 1)
        loss = w * F.nll_loss(logp, labels)
        if t + 1 < self.steps:
            loss = loss + (1 - w) * torch.mean(-self.q[labels, t] * logp)
        return loss

    def update_table(self, o, labels, t):
        """For each class y, the first sample (batch order) with label y whose argmax is wrong
        writes its softmax into q[y, t]; vectorised, so no host round trip."""
        if t + 1 >= self.steps:
            return
        c, batch = self.net.classes, labels.shape[0]
        wrong = o.argmax(1) != labels
        mask = F.one_hot(labels, c).bool() & wrong[:, None]
        order = torch.arange(batch, device=o.device)[:, None].expand(batch, c)
        first = torch.where(mask, order, torch.full_like(order, batch)).min(0).values
        hit = first < batch
        rows = F.softmax(o, 1)[first.clamp(max=batch - 1)]
        self.q[:, t] = torch.where(hit[:, None], rows, self.q[:, t])

    def train_sequence(self, inputs, labels, membrane):
        """One sequence: T steps, each with its own FPTT update. `inputs` is [T, B, I]."""
        batch, n, c = labels.shape[0], self.net.hidden, self.net.classes
        dev = inputs.device
        state = (membrane, torch.zeros(batch, n, device=dev), torch.full((batch, n), B0, device=dev),
                 torch.zeros(batch, c, device=dev))
        for t in range(self.steps):
            state = tuple(x.detach() for x in state)
            state = self.net.step(inputs[t], state)
            o = state[3]
            loss = self.task_loss(o, labels, t)
            with torch.no_grad():
                self.update_table(o, labels, t)
            total = loss + self.regulariser()
            self.optimizer.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
            self.optimizer.step()
            with torch.no_grad():
                for name, p in self.named:
                    self.lam[name].add_(p - self.wbar[name], alpha=-self.alpha)
                    self.wbar[name].mul_(1 - self.beta).add_(p, alpha=self.beta)
                    self.wbar[name].add_(self.lam[name], alpha=-self.beta / self.alpha)

    def state(self):
        """Every tensor by the engine's checkpoint names."""
        out = {"q": self.q}
        for name, p in self.named:
            out[name] = p.detach()
            out[name + ".wbar"] = self.wbar[name]
            out[name + ".lambda"] = self.lam[name]
            st = self.optimizer.state.get(p, {})
            if "exp_avg" in st:
                out[name + ".exp_avg"] = st["exp_avg"]
                out[name + ".exp_inf"] = st["exp_inf"]
        return out


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_name(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({torch.get_num_threads()} threads)"


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def vendor_matmul(dev, n, reps=5, warmup=2):
    """The vendor library's f32 matrix-product rate on `dev`: `torch.matmul` of two n x n f32
    matrices (cuBLAS on CUDA, the CPU BLAS otherwise) with TF32 off, after `warmup` products; the
    best of `reps` timed products (CUDA events around each on a GPU). Returns GFLOP/s = 2 n^3 / s."""
    assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    assert torch.get_float32_matmul_precision() == "highest"
    gen = torch.Generator(device=dev).manual_seed(3)
    a = torch.rand(n, n, device=dev, dtype=torch.float32, generator=gen)
    b = torch.rand(n, n, device=dev, dtype=torch.float32, generator=gen)
    c = torch.empty(n, n, device=dev, dtype=torch.float32)
    for _ in range(warmup):
        torch.matmul(a, b, out=c)
    sync(dev)
    best = math.inf
    for _ in range(reps):
        if dev.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            torch.matmul(a, b, out=c)
            end.record()
            end.synchronize()
            seconds = begin.elapsed_time(end) / 1e3
        else:
            start = time.perf_counter()
            torch.matmul(a, b, out=c)
            sync(dev)
            seconds = time.perf_counter() - start
        best = min(best, seconds)
    del a, b, c
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return 2 * n**3 / best / 1e9


def check(args):
    dev = pick_device(args.device)
    meta = safe_open(os.path.join(args.dir, "start.safetensors"), "np").metadata()
    start = load_file(os.path.join(args.dir, "start.safetensors"))
    data = load_file(os.path.join(args.dir, "data.safetensors"))
    after = load_file(os.path.join(args.dir, "after.safetensors"))
    if meta.get("optimizer") != "adamax" or meta.get("aux") != "table":
        sys.exit(f"{args.dir}: expected the benchmark network (adamax, aux table), found {meta}")
    steps, batch, hidden = int(meta["steps"]), int(meta["batch"]), int(meta["hidden"])
    inputs = torch.from_numpy(data["inputs"]).to(dev)
    labels = torch.from_numpy(data["labels"]).to(dev).long()
    membrane = torch.from_numpy(data["membrane"]).to(dev)
    net = LtcNet(inputs.shape[2], hidden, 10).to(dev)
    missing = net.load_state_dict({k: torch.from_numpy(v) for k, v in start.items()}, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    trainer = FpttTrainer(net, steps, lr=float(meta["lr"]), alpha=float(meta["alpha"]), beta=float(meta["beta"]),
                          clip=float(meta["clip"]))
    trainer.train_sequence(inputs, labels, membrane)
    ours = {k: v.detach().cpu().double().numpy() for k, v in trainer.state().items()}
    print(f"engine: {meta['adapter']} ({meta['backend']}, {meta['device_type']}); "
          f"peer: torch {torch.__version__} on {device_name(dev)}")
    print(f"N = {hidden}, B = {batch}, T = {steps} FPTT steps; error = max |engine - torch| / max |engine|,")
    print("  for lambda = -alpha (W - W-bar) summed: / max(max |lambda|, alpha max |W|), since lambda is a")
    print("  difference of W-sized numbers and f32 rounding of W shows in it at that scale")
    alpha = float(meta["alpha"])
    worst, failed = 0.0, []
    for name in sorted(after):
        if name not in ours:
            failed.append(f"{name}: not produced by the PyTorch replay")
            continue
        ref = after[name].astype(np.float64)
        scale = max(np.abs(ref).max(), 1e-30)
        if name.endswith(".lambda"):
            scale = max(scale, alpha * np.abs(after[name[: -len(".lambda")]]).max())
        err = float(np.abs(ours[name] - ref).max() / scale)
        worst = max(worst, err)
        flag = "" if err <= args.tol else "   <-- over tolerance"
        print(f"  {name:32s} {err:.2e}{flag}")
        if err > args.tol:
            failed.append(f"{name}: {err:.2e}")
    print(f"worst relative error {worst:.2e} (tolerance {args.tol:g})")
    if failed:
        print("MISMATCH:", "; ".join(failed))
        return 1
    print("engine and PyTorch hold the same weights")
    return 0


def bench(args):
    dev = pick_device(args.device)
    torch.manual_seed(1)
    # New columns go at the end, so readers of the older CSV (by name) keep working.
    header = ["implementation", "hidden", "layers", "batch", "steps", "ms_per_step", "sample_steps_per_s",
              "device", "device_type", "torch_version", "threads",
              "vendor_matmul_n", "vendor_matmul_gflop_per_s", "vendor_matmul_precision"]
    matmul_n = args.matmul if args.matmul is not None else (4096 if dev.type == "cuda" else 1024)
    vendor = ["", "", ""]
    if matmul_n > 0:
        rate = vendor_matmul(dev, matmul_n)
        vendor = [matmul_n, f"{rate:.3f}", torch.get_float32_matmul_precision()]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        f.flush()
        print(f"peer: torch {torch.__version__} on {device_name(dev)}")
        if matmul_n > 0:
            print(f"vendor f32 matrix product (torch.matmul, TF32 off): {vendor[1]} GFLOP/s "
                  f"({matmul_n}x{matmul_n}x{matmul_n}, best of 5)")
        print(f"{'hidden':>7} {'batch':>6} {'ms/step':>10} {'sample-steps/s':>15}")
        for hidden in args.hidden:
            for batch in args.batch:
                net = LtcNet(1, hidden, 10).to(dev)
                trainer = FpttTrainer(net, args.steps)
                inputs = torch.rand(args.steps, batch, 1, device=dev)
                labels = torch.randint(0, 10, (batch,), device=dev)
                membrane = torch.rand(batch, hidden, device=dev)
                trainer.train_sequence(inputs, labels, membrane)  # warm-up
                sync(dev)
                start = time.perf_counter()
                for _ in range(args.reps):
                    trainer.train_sequence(inputs, labels, membrane)
                sync(dev)
                seconds = (time.perf_counter() - start) / (args.reps * args.steps)
                print(f"{hidden:>7} {batch:>6} {seconds * 1e3:>10.3f} {batch / seconds:>15.0f}")
                writer.writerow(["pytorch", hidden, 1, batch, args.steps, f"{seconds * 1e3:.3f}",
                                 f"{batch / seconds:.1f}", device_name(dev), dev.type, torch.__version__,
                                 torch.get_num_threads(), *vendor])
                f.flush()
    print(f"csv: {args.out}")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("check", help="replay `fptt bench peer-check --out DIR` and compare")
    c.add_argument("dir")
    c.add_argument("--tol", type=float, default=1e-3, help="largest relative error per tensor (default 1e-3)")
    c.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    b = sub.add_parser("bench", help="time FPTT steps and write a CSV")
    b.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[256])
    b.add_argument("--batch", type=lambda s: [int(v) for v in s.split(",")], default=[64, 512])
    b.add_argument("--steps", type=int, default=8, help="time steps per timed sequence")
    b.add_argument("--reps", type=int, default=2, help="timed sequences per shape, after one warm-up")
    b.add_argument("--device", default="auto", help="cpu, cuda or auto (default auto)")
    b.add_argument("--matmul", type=int, default=None,
                   help="size n of the vendor n x n x n f32 matrix product measured first "
                        "(default 4096 on CUDA, 1024 on the CPU; 0 skips it)")
    b.add_argument("--out", default="results/bench-pytorch.csv")
    args = parser.parse_args()
    # Same f32 arithmetic as the engine, in the FPTT step and in the vendor matrix product: no TF32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return check(args) if args.mode == "check" else bench(args)


if __name__ == "__main__":
    sys.exit(main())
