"""Training-step cost of each compatibility method relative to phi* (independent), and each loss's
forward+backward against a per-sample Python loop (the reference code's style).

CPU, small_cnn at 32 px, batch 128, d = 256, random tensors; median over the timed steps after warm-up.
Methods are timed round-robin (one step of each per round) so machine load affects them alike.
Each method is timed with the frozen old model's forward pass in every step (as the reference code does) and
AdvBCT also with the old embeddings precomputed (TrainConfig.cache_old_embeddings, valid without random augmentation).

The "pretrained" section times the pretrained cpu backbone (the `lite` profile: EfficientNet-Lite0 with ImageNet weights
from its wheel, 64 px, batch 32, blocks 11+ trained): each method's step relative to phi* with the old embeddings cached,
all on cached trunk features (TrainConfig.cache_trunk), and images/s with the trunk cached, with the frozen trunk
recomputed every step, and with the whole backbone trained.
The last line printed is one JSON object.
"""
import argparse, json, math, statistics, time
import torch
import torch.nn.functional as F
from advbct.boundary import class_stats_from_embeddings
from advbct.config import profile
from advbct.losses import COMPAT_LOSSES, Progress, make_compat_loss, arcface_logits
from advbct.train import TrainStep, build_model, make_optimizer
from dataclasses import replace


def setup(args):
    g = torch.Generator().manual_seed(0)
    cfg = profile("cpu", dim=args.dim, batch_size=args.batch)
    images = torch.randn(args.batch, 3, args.size, args.size, generator=g)
    labels = torch.randint(0, args.classes, (args.batch,), generator=g)
    old = build_model(profile("cpu", dim=args.dim, seed=1), args.old_classes).eval().requires_grad_(False)
    emb = torch.randn(20 * args.old_classes, args.dim, generator=g)
    stats = class_stats_from_embeddings(emb, torch.arange(len(emb)) % args.old_classes, args.old_classes)
    return cfg, images, labels, old, stats


def make_runner(method, cfg, images, labels, old, stats, args, cached):
    model = build_model(cfg, args.classes)
    compat = make_compat_loss(method, old_classifier_weight=old.classifier.weight, num_old_classes=args.old_classes,
                              stats=stats, new_classifier=model.classifier, dim=args.dim)
    step_module = TrainStep(model, compat).train()
    opt = make_optimizer(cfg, [p for p in step_module.parameters() if p.requires_grad])
    needs_old = method != "independent"
    with torch.no_grad(): f_cache = old(images)
    state = {"step": 0}

    def run():
        # the same work as one step of train._fit
        if not needs_old: f_old = None
        elif cached: f_old = f_cache
        else:
            with torch.no_grad(): f_old = old(images)
        progress = Progress(0, 30, state["step"], 1000)
        _, terms, compat_terms = step_module(images, f_old, labels, progress)
        loss = terms["ce"] + sum(compat_terms.values(), torch.zeros(()))
        torch.stack([terms["ce"].detach(), *[v.detach() for v in compat_terms.values()], loss.detach()]).tolist()
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        state["step"] += 1
    return run


# ---- per-sample loop versions of the losses (what the vectorised ones replace)
def loop_losses(stats, old_weight, num_old):
    centres, r_max, theta_max = stats.centres, stats.r_max, stats.theta_max
    c_hat = F.normalize(centres, dim=1)

    def l2(fn, fo, y, lin):
        return sum(((fn[i] / fn[i].norm() - fo[i] / fo[i].norm()) ** 2).sum() for i in range(len(y))) / len(y)

    def bct(fn, fo, y, lin):
        terms = [F.cross_entropy((fn[i] @ old_weight.t())[None], y[i:i + 1]) for i in range(len(y)) if y[i] < num_old]
        return sum(terms) / max(len(terms), 1)

    def lce(fn, fo, y, lin):
        ang, al, n = 0.0, 0.0, 0
        for i in range(len(y)):
            c = int(y[i])
            if c >= num_old: continue
            cos = (fn[i] / fn[i].norm() @ c_hat[c]).clamp(-1 + 1e-7, 1 - 1e-7)
            ang = ang + torch.relu(torch.acos(cos) - theta_max[c])
            w = lin.weight[c]
            al = al + 1 - c_hat[c] @ (w / w.norm()); n += 1
        return ang / max(n, 1) + al / max(n, 1)

    def unibct(fn, fo, y, lin):
        terms = []
        for i in range(len(y)):
            c = int(y[i])
            if c >= num_old: continue
            cos = F.normalize(centres, dim=1) @ (fn[i] / fn[i].norm())
            logit = cos.clone()
            logit[c] = torch.cos(torch.acos(cos[c].clamp(-1 + 1e-7, 1 - 1e-7)) + 0.3)
            terms.append(F.cross_entropy(30 * logit[None], y[i:i + 1]))
        return sum(terms) / max(len(terms), 1)

    def hot_refresh(fn, fo, y, lin, tau=0.01, k=10):
        out = []
        nn_, on = F.normalize(fn, dim=1), F.normalize(fo, dim=1)
        for i in range(len(y)):
            neg = [j for j in range(len(y)) if y[j] != y[i]]
            so = torch.stack([nn_[i] @ on[j] for j in neg]).topk(min(k, len(neg))).values
            sn = torch.stack([nn_[i] @ nn_[j] for j in neg]).topk(min(k, len(neg))).values
            logits = torch.cat([(nn_[i] @ on[i])[None], so, sn]) / tau
            out.append(torch.logsumexp(logits, 0) - logits[0])
        return sum(out) / len(out)

    def advbct_p2s(fn, fo, y, lin, boundary=None):
        viol = []
        for i in range(len(y)):
            c = int(y[i])
            if c >= num_old: continue
            h = torch.relu((fn[i] / fn[i].norm() - centres[c]).norm() - boundary(torch.tensor([c]))[0])
            if h > 0: viol.append(h)
        return sum(viol) / len(viol) if viol else fn.sum() * 0
    return {"l2": l2, "bct": bct, "lce": lce, "unibct": unibct, "hot_refresh": hot_refresh, "advbct": advbct_p2s}


def round_robin_medians(runners, warmup, steps):
    "Median seconds per call of each runner, timed one call of each per round so machine load affects them alike."
    for _ in range(warmup):
        for r in runners.values(): r()
    times = {k: [] for k in runners}
    for _ in range(steps):
        for k, r in runners.items():
            t = time.perf_counter(); r(); times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def pretrained_steps(args):
    "Step times of the pretrained cpu configuration: per method on cached trunk features, and images/s three ways."
    g = torch.Generator().manual_seed(2)
    cfg = profile("lite", batch_size=args.lite_batch)
    images = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=g)
    labels = torch.randint(0, args.classes, (cfg.batch_size,), generator=g)
    old = build_model(cfg, args.old_classes).eval().requires_grad_(False)
    with torch.no_grad(): f_cache = old(images)
    stats = class_stats_from_embeddings(torch.randn(20 * args.old_classes, cfg.dim, generator=g),
                                        torch.arange(20 * args.old_classes) % args.old_classes, args.old_classes)

    def runner(method, config, from_trunk):
        model = build_model(replace(config, method=method), args.classes)
        compat = make_compat_loss(method, old_classifier_weight=old.classifier.weight, num_old_classes=args.old_classes,
                                  stats=stats, new_classifier=model.classifier, dim=config.dim)
        step_module = TrainStep(model, compat, from_trunk=from_trunk).train()
        model.to(memory_format=torch.channels_last)
        opt = make_optimizer(config, [p for p in step_module.parameters() if p.requires_grad])
        with torch.no_grad(): inputs = model.forward_trunk(images) if from_trunk else images
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        state = {"step": 0}
        def run():
            progress = Progress(0, 3, state["step"], 1000)
            _, terms, compat_terms = step_module(inputs, None if method == "independent" else f_cache, labels, progress)
            loss = terms["ce"] + sum(compat_terms.values(), torch.zeros(()))
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); state["step"] += 1
        return run

    runners = {m: runner(m, cfg, True) for m in COMPAT_LOSSES}
    runners["independent+trunk_recomputed"] = runner("independent", cfg, False)
    runners["independent+full_finetune"] = runner("independent", replace(cfg, trainable_from=None), False)
    med = round_robin_medians(runners, args.warmup, args.lite_steps)
    base = med["independent"]
    return {"profile": "lite", "backbone": cfg.backbone, "pretrained": cfg.pretrained, "image_size": cfg.image_size,
            "batch": cfg.batch_size, "trainable_from": cfg.trainable_from, "steps": args.lite_steps,
            "step_ms": {k: round(v * 1e3, 1) for k, v in med.items()},
            "step_time_vs_phi_star_cached_old": {m: round(med[m] / base, 3) for m in COMPAT_LOSSES if m != "independent"},
            "images_per_s": {"trunk_cached": round(cfg.batch_size / base, 1),
                             "trunk_recomputed": round(cfg.batch_size / med["independent+trunk_recomputed"], 1),
                             "full_finetune": round(cfg.batch_size / med["independent+full_finetune"], 1)}}


def time_it(fn, warmup, steps):
    for _ in range(warmup): fn()
    ts = []
    for _ in range(steps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128); ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--dim", type=int, default=256); ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--old-classes", type=int, default=300)
    ap.add_argument("--steps", type=int, default=20); ap.add_argument("--warmup", type=int, default=3)
    # 1 thread by default: on a shared 2-core machine, 2 OpenMP threads spend ~100 ms per op waiting for a busy core
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lite-batch", type=int, default=32); ap.add_argument("--lite-steps", type=int, default=10)
    ap.add_argument("--no-pretrained", action="store_true", help="skip the pretrained (EfficientNet-Lite0) section")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads); torch.manual_seed(0)
    cfg, images, labels, old, stats = setup(args)

    # ---- training steps, round-robin
    runners = {"independent": make_runner("independent", cfg, images, labels, old, stats, args, cached=False)}
    for m in COMPAT_LOSSES:
        if m == "independent": continue
        runners[m] = make_runner(m, cfg, images, labels, old, stats, args, cached=False)
    # the trainer's cache_old_embeddings: the frozen old model's embeddings looked up, not recomputed each step
    runners["advbct+cached_old"] = make_runner("advbct", cfg, images, labels, old, stats, args, cached=True)
    med = round_robin_medians(runners, args.warmup, args.steps)
    base = med["independent"]
    step_ratio = {k: round(v / base, 3) for k, v in med.items() if k != "independent"}

    # ---- loss forward+backward: vectorised module vs per-sample loop
    g = torch.Generator().manual_seed(1)
    f_old = torch.randn(args.batch, args.dim, generator=g)
    f_base = torch.randn(args.batch, args.dim, generator=g)
    lin = torch.nn.Linear(args.dim, args.classes, bias=False)
    loops = loop_losses(stats, old.classifier.weight, args.old_classes)
    # the largest per-sample loss terms and logits each loss sees: |a - b|^2 <= 4, 2 |f||w| (cross-entropy: logsumexp - logit),
    # angle <= pi plus 1 - cos <= 2, 2 * 30 cos, 2 cos / tau, a distance <= 2
    logit_bound = float(f_base.norm(dim=1).max() * old.classifier.weight.norm(dim=1).max())
    loss_scale = {"l2": 4.0, "bct": 2 * logit_bound, "lce": math.pi + 2, "unibct": 2 * 30.0, "hot_refresh": 2 / 0.01, "advbct": 2.0}
    loss_times = {}
    for m, loop in loops.items():
        mod = make_compat_loss(m, old_classifier_weight=old.classifier.weight, num_old_classes=args.old_classes,
                               stats=stats, new_classifier=lin, dim=args.dim, adversarial=False)
        def vec():
            f = f_base.clone().requires_grad_()
            sum(mod(f, f_old, labels, Progress()).values()).backward()
        kw = {"boundary": mod.boundary} if m == "advbct" else {}
        def slow():
            f = f_base.clone().requires_grad_()
            loop(f, f_old, labels, lin, **kw).backward()
        # the two agree (a check, not a timing)
        fv = f_base.clone().requires_grad_(); v = sum(mod(fv, f_old, labels, Progress()).values())
        fl = f_base.clone().requires_grad_(); l = loop(fl, f_old, labels, lin, **kw)
        # float32 sums of <= dim terms in another order, then a mean over <= batch samples: each side within (dim + batch) * 2**-24
        # of that scale
        atol = 2 * (args.dim + args.batch) * 2**-24 * loss_scale[m]
        assert torch.allclose(v, l, rtol=0, atol=atol), (m, float(v), float(l), atol)
        n = 3 if m == "hot_refresh" else max(3, args.steps // 4)
        tv, ts = time_it(vec, 2, args.steps), time_it(slow, 1, n)
        loss_times[m if m != "advbct" else "advbct_p2s"] = {"vectorised_ms": round(tv * 1e3, 3), "loop_ms": round(ts * 1e3, 3),
                                                            "speedup": round(ts / tv, 1)}
    result = {"device": "cpu", "threads": args.threads, "model": "small_cnn", "image_size": args.size, "batch": args.batch,
              "dim": args.dim, "classes": args.classes, "old_classes": args.old_classes, "steps": args.steps,
              "phi_star_step_ms": round(base * 1e3, 1),
              "step_ms": {k: round(v * 1e3, 1) for k, v in med.items()},
              "step_time_vs_phi_star": step_ratio,
              "advbct_vs_phi_star": step_ratio["advbct"], "advbct_cached_old_vs_phi_star": step_ratio["advbct+cached_old"],
              "loss_forward_backward": loss_times}
    if not args.no_pretrained:
        result["pretrained"] = pretrained_steps(args)
        print("pretrained cpu backbone:", json.dumps(result["pretrained"]["step_time_vs_phi_star_cached_old"]),
              "images/s:", json.dumps(result["pretrained"]["images_per_s"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
