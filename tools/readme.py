"""Write README.md from nbs/index.ipynb (nbdev's own README render needs Quarto, absent here).

Markdown cells are copied as they are; code cells become ```python blocks; cells carrying an nbdev
`#| hide` directive, and the directive lines themselves, are left out.
`python tools/readme.py --check` exits 1 when README.md differs from what it would write."""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def render(nb_path=ROOT / "nbs" / "index.ipynb"):
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    parts = []
    for cell in nb["cells"]:
        lines = "".join(cell["source"]).splitlines()
        directives = [l for l in lines if l.startswith("#|")]
        if any(d.replace(" ", "").startswith("#|hide") for d in directives): continue
        body = "\n".join(l for l in lines if not l.startswith("#|")).strip("\n")
        if not body: continue
        parts.append(body if cell["cell_type"] == "markdown" else f"```python\n{body}\n```")
    return ("<!-- Generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file. -->\n\n"
            + "\n\n".join(parts) + "\n")


if __name__ == "__main__":
    text, out = render(), ROOT / "README.md"
    if "--check" in sys.argv:
        if not out.exists() or out.read_text(encoding="utf-8") != text:
            sys.exit("README.md is out of date with nbs/index.ipynb: run `make sync` and commit it.")
    else:
        out.write_text(text, encoding="utf-8")
