"""The practitioner's path: their own old model, a stored gallery, a faiss index, no attribute names of ours.

`OWN_MODEL_SCRIPT` is what a user with a torchvision ResNet-18 in production writes to train a backward-compatible
successor with AdvBCT and check it through the index that serves their gallery. The test runs it as that user would
(a fresh interpreter) and checks what it wrote.
"""
import json, subprocess, sys, textwrap
from pathlib import Path

OWN_MODEL_SCRIPT = textwrap.dedent('''
    import json, sys, numpy as np, torch, torchvision
    from torch.utils.data import TensorDataset
    from advbct.config import profile
    from advbct.models import EmbeddingModel
    from advbct.train import train_new, embed_dataset, OldSide
    from advbct.search import build_index, topk
    from advbct.evaluate import LabelledTestSet, compatibility_report

    torch.manual_seed(0)
    labels = torch.arange(320) % 8                                   # your data: 8 classes of 32x32 images
    images = torch.rand(320, 3, 32, 32) * 0.5 + labels[:, None, None, None] / 16
    train, queries, gallery = TensorDataset(images[:192], labels[:192]), images[192:224], images[224:]
    old = torchvision.models.resnet18(num_classes=64).eval()        # the deployed model: image -> 64-d embedding
    embed = lambda model, x: embed_dataset(model, TensorDataset(x), 64, "cpu", progress_bar=False).numpy()
    old_gallery = embed(old, gallery)                                 # what the service stores (an .npy file)

    new = EmbeddingModel(torchvision.models.resnet18(num_classes=128), num_classes=8, dim=64)
    config = profile("smoke", method="advbct", epochs=2, out_dir=sys.argv[1])
    new = train_new(config, train, OldSide(old, train_set=train), model=new, progress_bar=False)

    index = build_index(old_gallery, "ivf_flat", nlist=4)             # the production index, trained on old embeddings
    _, found = topk(embed(new, queries), index, k=10)                 # new queries straight into the old index
    report = compatibility_report(LabelledTestSet("mine", None, labels[192:224].numpy(), gallery_labels=labels[224:].numpy()),
                                  embed(old, queries), old_gallery, embed(new, queries))
    json.dump(dict(found=found.tolist(), cross=report["cross"], old=report["old"]), open(sys.argv[2], "w"))
''')


def test_own_model_script(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run([sys.executable, "-c", OWN_MODEL_SCRIPT, str(tmp_path / "run"), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    found = result["found"]
    assert len(found) == 32 and all(len(row) == 10 for row in found)
    # every id the index returns is a gallery row or -1 (an empty slot of the IVF lists it probed)
    assert all(-1 <= i < 96 for row in found for i in row) and any(i >= 0 for row in found for i in row)
    assert 0 <= result["cross"] <= 1 and 0 <= result["old"] <= 1
    # the run recorded the embedding size it took from the model, not a dim set by hand
    assert "dim: 64" in (tmp_path / "run" / "config.yaml").read_text()
    # the script is short: what a pytorch-metric-learning user writes, with no attribute names of advbct's
    code = [l for l in OWN_MODEL_SCRIPT.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert len(code) <= 25, len(code)
    assert ".classifier" not in OWN_MODEL_SCRIPT and ".neck" not in OWN_MODEL_SCRIPT and "config.dim" not in OWN_MODEL_SCRIPT
