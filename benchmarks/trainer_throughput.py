"""Proxy-trainer throughput against a minimal hand-written PyTorch loop.

Both train the same model (the ``tiny`` space's ``all_3d``) on the same data stream
(the synthetic motion benchmark, clips generated on the device) with the same batch,
optimiser and number of steps; the trainer's extras (learning-rate schedule, loss
logging, divergence checks) are what is measured. Evaluation is excluded on both sides.
Runs alternate (plain, trainer, plain, ...) and the median of each is compared.

Goal: the trainer reaches at least 0.95 of the plain loop's clips/s.

On a CUDA machine it also reports the trainer in bf16 (its default there) against fp32,
with peak GPU memory, on a larger clip.

    python benchmarks/trainer_throughput.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from placement_search import load_space
from placement_search.data import SyntheticConfig, SyntheticMotion
from placement_search.train import ProxyBudget, _optimizer, train_proxy

STEPS, BATCH, REPEATS = 40, 32, 3


def plain_loop(space, data, device: torch.device, steps: int, batch: int) -> float:
    """The minimal loop: next batch, forward, loss, backward, step. Returns clips/s."""
    torch.manual_seed(0)
    model = space.build("all_3d", num_classes=data.num_classes).to(device).train()
    opt = _optimizer(model, ProxyBudget())
    it = data.train_batches(batch, seed=0, device=device)
    x, y = next(it)  # warm-up step, not timed (the trainer's first step is timed, a slight handicap)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    loss.item()
    return steps * batch / (time.perf_counter() - t0)


def trainer(space, data, device: str, steps: int, batch: int, precision: str = "auto") -> tuple[float, dict]:
    budget = ProxyBudget(steps=steps, batch_size=batch, eval_every=0, device=device, precision=precision)
    result = train_proxy(lambda: space.build("all_3d", num_classes=data.num_classes), data, budget)
    assert result.status == "ok", result.reason
    return result.clips_per_s, result.to_dict()


def main() -> None:
    space = load_space("tiny")
    device = torch.device("cpu")
    data = SyntheticMotion(SyntheticConfig(frames=16, size=32, eval_clips=11))
    print(
        f"tiny all_3d, batch {BATCH}, {STEPS} steps, clips 16x32x32, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    plain, ours = [], []
    for _ in range(REPEATS):
        plain.append(plain_loop(space, data, device, STEPS, BATCH))
        ours.append(trainer(space, data, "cpu", STEPS, BATCH)[0])
    p, o = statistics.median(plain), statistics.median(ours)
    print(f"  plain loop  {p:7.1f} clips/s  (runs: {', '.join(f'{v:.1f}' for v in plain)})")
    print(f"  trainer     {o:7.1f} clips/s  (runs: {', '.join(f'{v:.1f}' for v in ours)})")
    ratio = o / p
    print(f"  goal >= 0.95: {'met' if ratio >= 0.95 else 'MISSED'}")

    if torch.cuda.is_available():
        gpu = SyntheticMotion(SyntheticConfig(frames=16, size=64, eval_clips=11))
        print(f"\nCUDA: {torch.cuda.get_device_name()}, clips 16x64x64, batch 64")
        for precision in ("fp32", "bf16"):
            torch.cuda.reset_peak_memory_stats()
            trainer(space, gpu, "cuda", 10, 64, precision)  # warm-up (cuDNN autotuning)
            torch.cuda.reset_peak_memory_stats()
            cps, _ = trainer(space, gpu, "cuda", 100, 64, precision)
            mem = torch.cuda.max_memory_allocated() / 2**20
            print(f"  trainer {precision}: {cps:8.1f} clips/s, peak GPU memory {mem:.0f} MiB")
        print(f"  plain loop fp32: {plain_loop(space, gpu, torch.device('cuda'), 100, 64):8.1f} clips/s")

    print(f"trainer vs plain loop (CPU): {ratio:.3f}x clips/s")


if __name__ == "__main__":
    main()
