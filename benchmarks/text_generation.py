"""Seq2seq, language-model and word2vec figures: train the built-in recipes and print them.

    python benchmarks/text_generation.py                 # every part
    python benchmarks/text_generation.py dates gpt       # some parts
    python benchmarks/text_generation.py --quick dates   # tiny settings, a smoke check

Parts: ``dates`` (GRU + attention, test on held-out dates of the training formats),
``dates-unseen`` (the same recipe tested on formats never seen in training),
``dates-transformer``, ``gpt`` (BBC News perplexity beside the bigram baseline) and
``word2vec``. Each line gives the test metrics, the baseline's and the wall time of the
whole run (data, training, test, report). Torch uses one thread per process here
(``--threads``), which was fastest on a shared two-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

PARTS = {
    "dates": ("dates", []),
    "dates-unseen": ("dates", ["data.source.test_formats=unseen"]),
    "dates-transformer": ("dates-transformer", []),
    "gpt": ("bbc-gpt", []),
    "word2vec": ("word2vec-bbc", []),
}
QUICK = {
    "dates": ["data.source.n=600", "trainer.max_epochs=1"],
    "dates-unseen": ["data.source.n=600", "trainer.max_epochs=1"],
    "dates-transformer": ["data.source.n=600", "trainer.max_epochs=1"],
    "gpt": ["data.source.max_documents=60", "trainer.max_epochs=1"],
    "word2vec": ["data.source.max_documents=60", "trainer.max_epochs=1"],
}


def run_part(name: str, quick: bool, output: str, epochs: int | None = None) -> dict:
    import torchlab

    recipe, overrides = PARTS[name]
    overrides = [*overrides, "trainer.progress=none", *(QUICK[name] if quick else [])]
    if epochs is not None:  # fewer than the recipe's, e.g. on a busy machine
        overrides.append(f"trainer.max_epochs={epochs}")
    started = time.perf_counter()
    run = torchlab.train(recipe, overrides=overrides, output_dir=output)
    wall = time.perf_counter() - started
    summary = json.loads((run.dir / "summary.json").read_text())
    return {
        "part": name,
        "recipe": recipe,
        "overrides": overrides,
        "test": summary["test"],
        "baseline": summary.get("baseline"),
        "epochs": summary["epochs"],
        "train_seconds": summary["train_seconds"],
        "wall_seconds": round(wall, 1),
        "run": str(run.dir),
        **({"neighbours": summary["neighbours"]} if "neighbours" in summary else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", help=f"some of: {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke check)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--output", default=None, help="runs folder (default: a temp folder)")
    parser.add_argument("--epochs", type=int, default=None, help="override trainer.max_epochs")
    args = parser.parse_args()
    unknown = [p for p in args.parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part {unknown[0]!r}; choose from {', '.join(PARTS)}")

    import torch

    torch.set_num_threads(args.threads)
    output = args.output or tempfile.mkdtemp(prefix="torchlab-textgen-")
    print(f"# load average at start: {os.getloadavg()}, torch threads: {args.threads}")
    for name in args.parts or list(PARTS):
        result = run_part(name, args.quick, output, args.epochs)
        print(json.dumps(result), flush=True)
    print(f"# load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
