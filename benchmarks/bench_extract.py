"""Extraction throughput (images/s) of a paper-size encoder: ``repeval.extract.encode``
against a plain ``torch.inference_mode`` loop.

The encoder is the paper's MNIST stack (depth 16, 4×4×16 = 256-d latent; freshly
initialised — the speed does not depend on the weights), or with ``--dataset cifar10``
the CIFAR-10 one (depth 64, 1,024-d; images synthesised on the fly when the data is not
local). Inputs are uint8 test images (4,096 quick, 10,000 full), converted per batch as
repeval does.
Contenders, interleaved (see ``common.interleaved``):

- ``repeval`` — ``encode(model, x, latent, device)`` at repeval's own batch size
  (``repeval.devices.eval_batch_size``: 256 on a CPU, 1,024 on a GPU; ``--batch-size``
  overrides it) (eval mode, ``no_grad``, float32, batches moved to the device and latents
  copied back to the host);
- ``plain`` — the same batches under ``torch.inference_mode``, latents left on the device
  until one final copy;
- ``repeval_b<N>`` — ``encode`` at other batch sizes (``--batch-sizes``; quick: 1,024,
  the batch repeval used on every device before it chose 256 on a CPU).

On CUDA the timings synchronise the device at the end of every repetition.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import torch  # noqa: E402

PAPER = {"mnist": (1, 256), "cifar10": (3, 1024)}


def build_encoder(dataset_name: str, device: str):
    from encoders import build_model
    from repeval.specs import make_spec

    colors, latent_dim = PAPER[dataset_name]
    torch.manual_seed(0)
    return build_model(make_spec("baseline", dataset_name, latent_dim=latent_dim), colors).to(device).eval()


def images(dataset_name: str, data_dir: str | None, n: int) -> torch.Tensor:
    """``n`` uint8 test images of ``dataset_name`` (random uint8 images if it is not local)."""
    try:
        x = common.load_dataset(dataset_name, data_dir).test.x
    except Exception as exc:  # noqa: BLE001 - the speed does not depend on the pixels
        print(f"({dataset_name} not available: {exc}; using random images)")
        colors = PAPER[dataset_name][0]
        x = torch.randint(0, 256, (n, colors, 32, 32), dtype=torch.uint8)
    return x[:n]


def plain_encode(model, x: torch.Tensor, device: str, batch_size: int) -> torch.Tensor:
    from repeval.data.base import to_float

    with torch.inference_mode():
        out = [model.encoder(to_float(x[i:i + batch_size].to(device))).flatten(1)
               for i in range(0, len(x), batch_size)]
        return torch.cat(out).cpu()


def measure(model, x: torch.Tensor, device: str, batch_size: int | None, batch_sizes: list[int],
            reps: int) -> dict[str, Any]:
    from repeval.devices import eval_batch_size
    from repeval.extract import encode

    batch_size = batch_size or eval_batch_size(device)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    latent = model.default_latent()
    contenders = {"repeval": lambda: (encode(model, x, latent, device, batch_size), sync()),
                  "plain": lambda: (plain_encode(model, x, device, batch_size), sync())}
    for b in batch_sizes:
        if b != batch_size:
            contenders[f"repeval_b{b}"] = lambda b=b: (encode(model, x, latent, device, b), sync())
    timing = common.interleaved(contenders, reps=reps, warmup=1)
    z_repeval = torch.from_numpy(encode(model, x, latent, device, batch_size))
    z_plain = plain_encode(model, x, device, batch_size)
    n = len(x)
    return {"images": n, "batch_size": batch_size, "reps": reps, **timing.summary(),
            "images_per_s": {k: round(n / timing.median(k), 1) for k in contenders},
            "ratio_repeval_over_plain_time": round(timing.ratio("repeval", "plain"), 3),
            "max_abs_difference": float((z_repeval - z_plain).abs().max())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist", choices=sorted(PAPER))
    p.add_argument("--device", default=os.environ.get("DEVICE", "cpu"))
    p.add_argument("--images", type=int, help="test images encoded per repetition (default: quick 4,096, full 10,000)")
    p.add_argument("--batch-size", type=int, help="batch of the repeval and plain contenders (default: repeval's own)")
    p.add_argument("--batch-sizes", help="extra batch sizes for repeval's encode "
                                         "(default: quick 1024, full 64,128,512,1024,4096)")
    p.add_argument("--reps", type=int, help="interleaved repetitions (default: quick 3, full 5)")
    p.add_argument("--full", action="store_true")
    p.add_argument("--quick", action="store_true", help="the default")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir")
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    reps = args.reps or (5 if args.full else 3)
    model = build_encoder(args.dataset, args.device)
    x = images(args.dataset, args.data_dir, args.images or (10_000 if args.full else 4096))
    sizes = [int(b) for b in (args.batch_sizes or ("64,128,512,1024,4096" if args.full else "1024")).split(",") if b]
    r = measure(model, x, args.device, args.batch_size, sizes, reps)
    report = {"machine": common.machine(), "device": args.device, "dataset": args.dataset, "threads": args.threads,
              "command": " ".join([Path(sys.executable).name, *sys.argv]), **r}
    print(f"# extraction, {args.dataset} paper encoder, {len(x):,} images, {args.device}, {args.threads} thread(s), "
          f"repeval batch {r['batch_size']}")
    print("  ".join(f"{k}={v:,.0f} img/s" for k, v in r["images_per_s"].items())
          + f"  repeval/plain time={r['ratio_repeval_over_plain_time']}  max|dz|={r['max_abs_difference']:.2e}"
          + f"  (load {r['load_before']}->{r['load_after']})")
    common.write_results("bench_extract", report, args.out)
    return report


if __name__ == "__main__":
    main()
