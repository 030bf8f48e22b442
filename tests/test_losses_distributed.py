"Hot-Refresh negatives gathered across two gloo processes with unequal batch sizes."
import os, tempfile
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from advbct.losses import HotRefreshLoss, Progress, gather_across_processes

SIZES = (5, 3)  # unequal per-rank batches (a last, short batch)
# float64 (u = 1.1e-16), |logits| <= 1/tau = 10, each a d = 6 dot product over two norms (<= 10 * 10 u = 1.1e-14): the loss and
# its gradient differ from the loops' by < 1e-12 (the loops sum the same terms in other orders)
ATOL = 1e-12

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

def per_row_loss_autograd(queries, new_keys, f_old, labels, rows, tau, k):
    "The same loss with autograd: query i is queries[i], its new negatives come from new_keys (pass constants to stop their gradient)."
    out = []
    for i in rows:
        n = queries[i] / queries[i].norm()
        neg = [j for j in range(len(labels)) if labels[j] != labels[i]]
        so = torch.stack([n @ f_old[j] / f_old[j].norm() for j in neg]).topk(min(k, len(neg))).values
        sn = torch.stack([n @ new_keys[j] / new_keys[j].norm() for j in neg]).topk(min(k, len(neg))).values
        logits = torch.cat([(n @ f_old[i] / f_old[i].norm())[None], so, sn]) / tau
        out.append(torch.logsumexp(logits, 0) - logits[0])
    return sum(out) / len(out)

def worker(rank, world, init_file, results):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        f_new, f_old, labels = global_batch()
        lo = sum(SIZES[:rank]); rows = range(lo, lo + SIZES[rank]); mine = slice(lo, lo + SIZES[rank])
        gathered = gather_across_processes(f_new[mine].clone().requires_grad_())
        assert torch.equal(gathered.detach(), f_new)
        out = {}
        for option in (False, True):  # False (the default): every negative key is a constant, as in the reference
            local_new = f_new[mine].clone().requires_grad_()
            loss_fn = HotRefreshLoss(tau=0.1, hardest=3) if not option else HotRefreshLoss(tau=0.1, hardest=3, new_negative_grad=True)
            loss = loss_fn(local_new, f_old[mine], labels[mine], Progress())["hot_refresh"]
            loss.backward()
            # the oracle: this rank's rows are the queries (with gradient); keys from the other process are always constants,
            # the local new keys carry gradient only with new_negative_grad=True
            local_ref = f_new[mine].clone().requires_grad_()
            mixed = torch.cat([f_new[:lo], local_ref, f_new[lo + SIZES[rank]:]])
            per_row_loss_autograd(mixed, mixed if option else f_new, f_old, labels, rows, 0.1, 3).backward()
            out[option] = (loss.item(), per_row_loss(f_new, f_old, labels, rows, 0.1, 3),
                           bool(torch.isfinite(local_new.grad).all() and local_new.grad.abs().sum() > 0),
                           float((local_new.grad - local_ref.grad).abs().max()), local_new.grad.clone())
        results[rank] = out
    finally:
        dist.destroy_process_group()

@pytest.mark.slow
def test_hot_refresh_gathers_negatives_across_processes():
    with tempfile.TemporaryDirectory() as tmp:
        results = mp.Manager().dict()
        mp.spawn(worker, args=(len(SIZES), os.path.join(tmp, "rendezvous"), results), nprocs=len(SIZES), join=True)
    for rank in range(len(SIZES)):
        for option, (got, want, grad_ok, grad_diff, _) in results[rank].items():
            assert abs(got - want) < ATOL, (rank, option, got, want)
            assert grad_ok
            assert grad_diff < ATOL, (rank, option, grad_diff)
        # the option changes the gradient (through the local new negatives), so the oracle above tells them apart
        g_default, g_option = results[rank][False][4], results[rank][True][4]
        assert (g_default - g_option).abs().max() > 0.01 * g_default.abs().max(), rank
