"""How fast is our cost counter compared with fvcore's FlopCountAnalysis?

Measures, for I3D and S3D (the ``inception`` space) at a 1 x 3 x 64 x 224 x 224 clip:

* ours: ``space.cost(name, frames=64, size=224)``, which builds the model on torch's
  ``meta`` device and propagates shapes only (model build included in the time);
  median of several repeats, after one warm-up call (kept out of the median) that pays torch's one-time
  lazy imports of its meta kernels (that cold call's time is printed too);
* fvcore: ``FlopCountAnalysis(model, x).total()`` on the real CPU model in eval mode,
  under ``torch.no_grad()``, with a real random input: the JIT trace and the forward
  with real tensors, which is what a user of fvcore must run. Building the model and
  the input tensor is excluded from fvcore's time (and printed separately), while our
  time includes our meta build, so the ratio is conservative.

fvcore is set to count only conv and linear multiply-adds (its norm, pooling,
upsampling and grid-sampling handles are switched off), the convention of our
``Cost.macs``. (fvcore 0.1.5's ``set_op_handle(op, None)`` does not remove a default
handle, it only marks the op as ignored, so those ops get a handle that counts nothing.)
The two counts must be exactly equal, and so must the parameter counts;
if not, the per-operator breakdown is printed and the script exits with status 1.

Goal (the issue's acceptance): our count equals the multiply-add convention exactly and
is at least 50x faster than fvcore. The last line printed is the headline: the
minimum speed-up over the models.

Run from anywhere, no flags: ``python benchmarks/count_speed.py``. Needs fvcore
(``pip install fvcore``; it is in the project's ``dev`` extras). Uses torch's default
number of threads. Takes about a minute on 2 CPU cores.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

MODELS = ("i3d", "s3d")
FRAMES, SIZE = 64, 224
OURS_REPEATS = 5
FVCORE_REPEATS = 3
GOAL = 50.0

# fvcore handles that count something other than conv / linear multiply-adds; replaced by
# _count_nothing (setting them to None is not enough in fvcore 0.1.5, see the docstring).
NON_MAC_OPS = (
    "aten::batch_norm",
    "aten::group_norm",
    "aten::layer_norm",
    "aten::instance_norm",
    "aten::upsample_nearest2d",
    "aten::upsample_bilinear2d",
    "aten::adaptive_avg_pool2d",
    "aten::grid_sampler",
)


def _count_nothing(inputs: object, outputs: object) -> Counter:
    return Counter()


def _imports():
    try:
        import placement_search  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from fvcore.nn import FlopCountAnalysis, parameter_count
    except ImportError:
        print(
            "fvcore is not installed; this benchmark compares our counter with fvcore's.\n"
            "Install it with:  pip install fvcore   (it is in the project's dev extras: pip install -e '.[dev]')",
            file=sys.stderr,
        )
        sys.exit(1)
    from placement_search import load_space

    return load_space, FlopCountAnalysis, parameter_count


def main() -> int:
    load_space, FlopCountAnalysis, parameter_count = _imports()
    import torch

    space = load_space("inception")
    print(
        f"clip (1, 3, {FRAMES}, {SIZE}, {SIZE}); torch {torch.__version__}, {torch.get_num_threads()} threads (default)"
    )
    print(
        "timed: ours = space.cost() incl. its meta-device model build; "
        "fvcore = FlopCountAnalysis + JIT trace + real forward (model build and input tensor excluded)"
    )
    t0 = time.perf_counter()
    space.cost(MODELS[0], frames=FRAMES, size=SIZE)
    cold = time.perf_counter() - t0
    print(
        f"ours, first call in the process (warm-up, not in the medians; pays torch's one-time lazy imports): {cold * 1e3:.0f} ms"
    )

    ok = True
    speedups: dict[str, float] = {}
    for name in MODELS:
        ours_times = []
        for _ in range(OURS_REPEATS):
            t0 = time.perf_counter()
            cost = space.cost(name, frames=FRAMES, size=SIZE)
            ours_times.append(time.perf_counter() - t0)
        ours_t = statistics.median(ours_times)

        t0 = time.perf_counter()
        torch.manual_seed(0)
        model = space.build(name, num_classes=400).eval()
        x = torch.randn(1, 3, FRAMES, SIZE, SIZE)
        build_t = time.perf_counter() - t0

        fv_times = []
        with torch.no_grad():
            for _ in range(FVCORE_REPEATS):
                t0 = time.perf_counter()
                fca = FlopCountAnalysis(model, x)
                fca.set_op_handle(**dict.fromkeys(NON_MAC_OPS, _count_nothing))
                fca.unsupported_ops_warnings(False)
                fca.uncalled_modules_warnings(False)
                fv_macs = fca.total()
                fv_times.append(time.perf_counter() - t0)
        fv_t = statistics.median(fv_times)
        fv_params = parameter_count(model)[""]

        same = cost.macs == fv_macs and cost.params == fv_params
        ok = ok and same
        speedups[name] = fv_t / ours_t
        print(f"\n{name}:")
        print(f"  params   ours {cost.params:,}   fvcore {fv_params:,}")
        print(f"  MACs     ours {cost.macs:,}   fvcore {fv_macs:,}   exactly equal: {'yes' if same else 'NO'}")
        print(
            f"  ours     {ours_t * 1e3:.1f} ms (median of {OURS_REPEATS}: {', '.join(f'{t * 1e3:.1f}' for t in ours_times)})"
        )
        print(f"  fvcore   {fv_t:.2f} s (median of {FVCORE_REPEATS}: {', '.join(f'{t:.2f}' for t in fv_times)})")
        print(f"  (model build + input tensor for fvcore, not timed: {build_t:.2f} s)")
        print(f"  speed-up {speedups[name]:.0f}x")
        if not same:
            print("  fvcore per operator:", dict(fca.by_operator()))
            print(f"  ours: conv/linear MACs {cost.macs:,} over {len(cost.layers)} layers")

    worst = min(speedups.values())
    print()
    if not ok:
        print("FAIL: counts differ from fvcore's conv/linear multiply-adds")
    else:
        verdict = "meets" if worst >= GOAL else "MISSES"
        print(f"counts identical to fvcore; {verdict} the {GOAL:.0f}x goal")
    print(f"speedup vs fvcore (min over {', '.join(MODELS)}): {worst:.0f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
