"""Top input-Hessian eigenvalue of many inputs: batched Lanczos vs batched power vs per-sample eigsh.

Every method must reach a relative accuracy of 1e-3 on EVERY sample against dense
ground truth (for ReLU networks the exact K x K Gauss-Newton form, checked
against dense Hessians from d Hessian-vector products on a few samples). Reported per
method: Hessian-vector products (batched calls, and per sample), wall time, worst
relative error. Times are measured side by side in one run (min over repeats for the
fast methods), so the printed ratios are robust to load on a shared machine.

* batched Lanczos: ``top_input_eigenvalues(method="lanczos", tol=1e-3)``, its own residual
  stopping rule, and with ``tol=0`` (run until each sample's Krylov space is exhausted,
  at most K products for a ReLU network with K classes).
* batched power iteration, own rule: ``method="power", tol=1e-3`` (stop when the
  estimate changes by < 1e-3 relative); reported with the error it actually reaches.
* batched power iteration, oracle: the fewest products after which every sample is
  within 1e-3 of the truth (read from the iteration history, then re-timed with
  exactly that many products). No practical stopping rule can do better.
* per-sample loop: scipy.sparse.linalg.eigsh (ARPACK Lanczos, k=1, which="LA") on a
  LinearOperator, one sample at a time.

Usage: python benchmarks/hessian.py [--n 200] [--model small_cnn] [--trained]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mcutils import data, hessian, models, runtime, training
from mcutils.hessian import InputHessian

TARGET = 1e-3


def rel_err(est: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    return (est.double() - truth).abs() / truth.abs().clamp_min(1e-12)


def gauss_newton_truth(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
                       ) -> torch.Tensor:
    """Exact top eigenvalues for piecewise-linear networks (ReLU, max-pool).

    The Jacobian is taken in the model's own dtype (float32; a float64 copy can break
    max-pool ties differently on the exactly-zero background of Fashion-MNIST and so
    is a slightly different function); the small matrices are then handled in float64.

    Autograd's input Hessian of such a network is exactly ``J^T (diag(p) - p p^T) J``
    (the network's own second derivatives are zero), whose non-zero eigenvalues are
    those of the K x K matrix ``A^(1/2) J J^T A^(1/2)``: K backward passes per batch.
    Checked against dense Hessians on a few samples by :func:`dense_truth`.
    """
    model.eval()
    xd = x.clone().requires_grad_(True)
    logits = model(xd)
    k = logits.shape[1]
    jac = torch.stack([torch.autograd.grad(logits[:, c].sum(), xd, retain_graph=True)[0]
                       .flatten(1) for c in range(k)], 1).double()  # [N, K, d]
    p = torch.softmax(logits.detach().double(), 1)
    a = torch.diag_embed(p) - p[:, :, None] * p[:, None]
    evals, evecs = torch.linalg.eigh(a)
    root = evecs @ torch.diag_embed(evals.clamp_min(0).sqrt()) @ evecs.transpose(1, 2)
    small = root @ (jac @ jac.transpose(1, 2)) @ root
    return torch.linalg.eigvalsh(small)[:, -1]


def dense_truth(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Top eigenvalues of dense Hessians (d products per sample, batched)."""
    h = hessian.dense_input_hessians(model, x, y).double()
    return torch.linalg.eigvalsh(h)[:, -1]


def eigsh_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, tol: float
               ) -> tuple[torch.Tensor, int]:
    from scipy.sparse.linalg import LinearOperator, eigsh

    values, products = [], 0
    model.eval()
    for i in range(len(x)):
        op = InputHessian(model, x[i:i + 1], y[i:i + 1])
        d = x[i].numel()

        def matvec(v, op=op, shape=x[i:i + 1].shape):
            t = torch.as_tensor(np.asarray(v, dtype=np.float32).reshape(shape))
            return op(t).flatten().double().numpy()

        lin = LinearOperator((d, d), matvec=matvec, dtype=np.float64)
        v0 = np.random.default_rng(i).standard_normal(d)
        val = eigsh(lin, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        values.append(float(val[0]))
        products += op.products
    return torch.tensor(values, dtype=torch.float64), products


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="number of test inputs")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--trained", action="store_true",
                        help="use the default trained model (cached) instead of an untrained one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--power-iters", type=int, default=400)
    parser.add_argument("--dense-check", type=int, default=4,
                        help="samples whose dense Hessian checks the ground truth")
    args = parser.parse_args()

    torch.set_num_threads(max(1, torch.get_num_threads()))
    runtime.seed_everything(0)
    test = data.load_dataset("fashion-mnist", "test")
    x, y = test.x[:args.n], test.y[:args.n]
    if args.trained:
        model = training.trained_model(model=args.model, progress=False)
    else:
        model = models.build_for_dataset(args.model, "fashion-mnist").eval()
    print(f"{args.n} Fashion-MNIST test inputs, {args.model} "
          f"({'trained' if args.trained else 'untrained'}), {torch.get_num_threads()} threads")

    start = time.perf_counter()
    truth = gauss_newton_truth(model, x, y)
    check = dense_truth(model, x[:args.dense_check], y[:args.dense_check])
    agree = float(rel_err(truth[:args.dense_check], check).max())
    if agree > 1e-4:
        raise SystemExit(f"Gauss-Newton truth differs from dense Hessians by {agree:.1e}: "
                         "the model is not piecewise linear; use dense truth")
    print(f"ground truth: K x K Gauss-Newton form, equal to dense Hessians on "
          f"{args.dense_check} samples (max rel. diff {agree:.0e}); {time.perf_counter() - start:.1f} s")
    print(f"top eigenvalue median {truth.median():.4g}, range [{truth.min():.3g}, {truth.max():.3g}]")

    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    rows = []

    t, (lz, li) = timed(lambda: hessian.top_input_eigenvalues(
        model, x, y, "lanczos", iters=60, tol=TARGET, generator=gen(), return_info=True),
        args.repeats)
    rows.append(("batched Lanczos (tol 1e-3)", li["products"],
                 float(li["sample_products"].float().mean()), t, rel_err(lz, truth).max()))

    t, (lz0, li0) = timed(lambda: hessian.top_input_eigenvalues(
        model, x, y, "lanczos", iters=60, tol=0, generator=gen(), return_info=True),
        args.repeats)
    rows.append(("batched Lanczos (tol 0: to Krylov exhaustion)", li0["products"],
                 float(li0["sample_products"].float().mean()), t, rel_err(lz0, truth).max()))

    t, (pw, pi) = timed(lambda: hessian.top_input_eigenvalues(
        model, x, y, "power", iters=args.power_iters, tol=TARGET, generator=gen(),
        return_info=True), args.repeats)
    rows.append(("batched power (own rule, tol 1e-3)", pi["products"],
                 float(pi["sample_products"].float().mean()), t, rel_err(pw, truth).max()))

    _, hist_info = hessian.top_input_eigenvalues(
        model, x, y, "power", iters=args.power_iters, tol=0, generator=gen(), return_info=True)
    errs = rel_err(hist_info["history"], truth[None]).amax(1)
    ok = (errs <= TARGET).nonzero()
    if len(ok):
        need = int(ok[0, 0]) + 1
        t, (po, poi) = timed(lambda: hessian.top_input_eigenvalues(
            model, x, y, "power", iters=need, tol=0, generator=gen(), return_info=True),
            args.repeats)
        rows.append(("batched power (oracle stop)", poi["products"], float(need), t,
                     rel_err(po, truth).max()))
    else:
        print(f"batched power iteration: not within 1e-3 on every sample after "
              f"{args.power_iters} products (worst {errs[-1]:.2e})")

    t, (es, eprod) = timed(lambda: eigsh_loop(model, x, y, tol=1e-4), 1)
    rows.append(("per-sample eigsh loop (tol 1e-4)", eprod, eprod / len(x), t,
                 rel_err(es, truth).max()))

    print()
    print("| method | batched products | products per sample | time (s) | worst rel. error "
          "| all within 1e-3 |")
    print("|---|---|---|---|---|---|")
    for name, prod, per, sec, err in rows:
        print(f"| {name} | {prod} | {per:.1f} | {sec:.3f} | {float(err):.1e} "
              f"| {'yes' if float(err) <= TARGET else 'no'} |")
    lanczos_t, lanczos_p = rows[1][3], rows[1][1]
    print()
    for name, prod, _, sec, _ in rows[2:]:
        print(f"{name}: {sec / lanczos_t:.1f}x the time of Lanczos (tol 0), "
              f"{prod / lanczos_p:.1f}x its batched products")


if __name__ == "__main__":
    main()
