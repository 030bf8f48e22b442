"Hot-Refresh negatives gathered across two gloo processes with unequal batch sizes."
import os, tempfile
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from advbct.losses import HotRefreshLoss, Progress, gather_across_processes

SIZES = (5, 3)  # unequal per-rank batches (a last, short batch)

def global_batch():
    g = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    return (torch.randn(n, 6, dtype=torch.float64, generator=g), torch.randn(n, 6, dtype=torch.float64, generator=g),
            torch.tensor([0, 1, 2, 0, 1, 2, 3, 0]))

def per_row_loss(f_new, f_old, labels, rows, tau, k):
    "Slow per-sample Hot-Refresh loss of `rows`, negatives from the whole batch."
    out = []
    for i in rows:
        n = f_new[i] / f_new[i].norm()
        sp = n @ f_old[i] / f_old[i].norm()
        neg = [j for j in range(len(labels)) if labels[j] != labels[i]]
        so = sorted([float(n @ f_old[j] / f_old[j].norm()) for j in neg], reverse=True)[:k]
        sn = sorted([float(n @ f_new[j] / f_new[j].norm()) for j in neg], reverse=True)[:k]
        denom = torch.exp(sp / tau) + sum(torch.exp(torch.tensor(s, dtype=torch.float64) / tau) for s in so + sn)
        out.append(float(-torch.log(torch.exp(sp / tau) / denom)))
    return sum(out) / len(out)

def per_row_loss_autograd(f_new, f_old, labels, rows, tau, k):
    "The same loss with autograd through every similarity (the reference's: keys are whatever f_new holds)."
    out = []
    for i in rows:
        n = f_new[i] / f_new[i].norm()
        neg = [j for j in range(len(labels)) if labels[j] != labels[i]]
        so = torch.stack([n @ f_old[j] / f_old[j].norm() for j in neg]).topk(min(k, len(neg))).values
        sn = torch.stack([n @ f_new[j] / f_new[j].norm() for j in neg]).topk(min(k, len(neg))).values
        logits = torch.cat([(n @ f_old[i] / f_old[i].norm())[None], so, sn]) / tau
        out.append(torch.logsumexp(logits, 0) - logits[0])
    return sum(out) / len(out)

def worker(rank, world, init_file, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        f_new, f_old, labels = global_batch()
        lo = sum(SIZES[:rank]); rows = range(lo, lo + SIZES[rank])
        local_new = f_new[lo:lo + SIZES[rank]].clone().requires_grad_()
        gathered = gather_across_processes(local_new)
        assert torch.equal(gathered.detach(), f_new)
        loss = HotRefreshLoss(tau=0.1, hardest=3)(local_new, f_old[lo:lo + SIZES[rank]], labels[lo:lo + SIZES[rank]], Progress())
        loss["hot_refresh"].backward()
        # keys gathered from the other process are constants (no gradient flows back to them, as in the reference);
        # the local rows are queries and keys, with gradient through both
        local_ref = f_new[lo:lo + SIZES[rank]].clone().requires_grad_()
        mixed = torch.cat([f_new[:lo], local_ref, f_new[lo + SIZES[rank]:]])
        per_row_loss_autograd(mixed, f_old, labels, rows, 0.1, 3).backward()
        results[rank] = (loss["hot_refresh"].item(), per_row_loss(f_new, f_old, labels, rows, 0.1, 3),
                         bool(torch.isfinite(local_new.grad).all() and local_new.grad.abs().sum() > 0),
                         float((local_new.grad - local_ref.grad).abs().max()))
    finally:
        dist.destroy_process_group()

@pytest.mark.slow
def test_hot_refresh_gathers_negatives_across_processes():
    with tempfile.TemporaryDirectory() as tmp:
        results = mp.Manager().dict()
        mp.spawn(worker, args=(len(SIZES), os.path.join(tmp, "rendezvous"), results), nprocs=len(SIZES), join=True)
    for rank in range(len(SIZES)):
        got, want, grad_ok, grad_diff = results[rank]
        assert abs(got - want) < 1e-8, (rank, got, want)
        assert grad_ok
        assert grad_diff < 1e-10, (rank, grad_diff)
