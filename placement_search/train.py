"""The proxy trainer: a short training run that turns a placement into a measured accuracy.

It knows nothing of Optuna or Ray. Give it a model (or a space and a placement), a
:class:`~placement_search.data.base.ClipData` and a :class:`ProxyBudget`; it returns a
:class:`TrainResult` that never raises for the run's own troubles: a diverging run (NaN or
inf loss) stops at once with status ``diverged``, an out-of-memory error gives
``out_of_memory``, and a ``callback`` that asks to stop gives ``stopped``.

On CPU a run is deterministic for a seed. On CUDA it uses bf16 autocast, the
channels-last 3D memory format and cuDNN autotuning, and data stays on the device.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .data.base import ClipData
from .devices import resolve_device
from .errors import UserError

__all__ = ["EvalResult", "ProxyBudget", "TrainResult", "evaluate", "train_proxy"]

Status = Literal["ok", "diverged", "out_of_memory", "stopped", "failed"]
#: ``callback(step, eval_result)``; return True to stop the run (status "stopped").
Callback = Callable[[int, "EvalResult"], bool | None]


@dataclass(frozen=True)
class ProxyBudget:
    """How much training a proxy run gets, and how.

    Attributes:
        steps: optimiser steps.
        batch_size: clips per step.
        optimizer: ``sgd`` (momentum 0.9, Nesterov) or ``adamw``.
        lr: peak learning rate.
        weight_decay: decoupled for AdamW, L2 for SGD.
        warmup_steps: linear warm-up, then cosine decay to zero.
        label_smoothing: cross-entropy label smoothing.
        eval_every: intermediate evaluations every this many steps (0: only at the end);
            each is reported to the callback.
        eval_batch_size: clips per evaluation batch.
        seed: weights, data order and augmentation.
        device: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda``, ``cuda:1``...
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32`` or ``bf16``.
        channels_last: channels-last 3D memory format on CUDA.
        threads: CPU threads for this run (None: torch's default).
        log_every: loss-curve resolution in steps.
    """

    steps: int = 200
    batch_size: int = 32
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 20
    label_smoothing: float = 0.0
    eval_every: int = 100
    eval_batch_size: int = 100
    seed: int = 0
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    channels_last: bool = True
    threads: int | None = None
    log_every: int = 10

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.eval_batch_size < 1 or self.log_every < 1:
            raise UserError("proxy budget: steps, batch_size, eval_batch_size and log_every must be >= 1")
        if self.eval_every < 0 or self.warmup_steps < 0:
            raise UserError("proxy budget: eval_every and warmup_steps must be >= 0")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"proxy budget: lr must be a positive number, got {self.lr}")
        if self.optimizer not in ("sgd", "adamw"):
            raise UserError(f"proxy budget: optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if not 0 <= self.seed < 2**63:
            raise UserError(f"proxy budget: seed must be in [0, 2^63), got {self.seed}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"proxy budget: precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")


@dataclass
class EvalResult:
    top1: float
    top5: float | None
    loss: float
    per_class: dict[str, float]
    clips: int


@dataclass
class TrainResult:
    """What a proxy run measured. ``accuracy`` is top-1 on the held-out clips in [0, 1]."""

    status: Status
    accuracy: float | None = None
    top5: float | None = None
    per_class_accuracy: dict[str, float] = field(default_factory=dict)
    eval_loss: float | None = None
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    eval_curve: list[tuple[int, float]] = field(default_factory=list)
    steps_done: int = 0
    clips_per_s: float = 0.0
    wall_time_s: float = 0.0
    train_time_s: float = 0.0
    device: str = ""
    precision: str = ""
    reason: str | None = None
    budget: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss_curve"] = [list(p) for p in self.loss_curve]
        d["eval_curve"] = [list(p) for p in self.eval_curve]
        return d


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: ClipData,
    *,
    device: torch.device,
    batch_size: int = 100,
    autocast: bool = False,
    channels_last: bool = False,
) -> EvalResult:
    """Top-1, top-5 (with more than 5 classes), loss and per-class accuracy on the held-out clips."""
    was_training = model.training
    model.eval()
    k = data.num_classes
    correct = torch.zeros(k, device=device)
    seen = torch.zeros(k, device=device)
    top5 = torch.zeros((), device=device)
    loss = torch.zeros((), device=device)
    n = 0
    for x, y in data.eval_batches(batch_size, device=device):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        logits = logits.float()
        loss += F.cross_entropy(logits, y, reduction="sum")
        pred = logits.argmax(1)
        correct.index_add_(0, y, (pred == y).float())
        seen.index_add_(0, y, torch.ones_like(y, dtype=torch.float32))
        if k > 5:
            top5 += (logits.topk(5, dim=1).indices == y[:, None]).any(1).sum()
        n += y.numel()
    model.train(was_training)
    if n == 0:
        raise UserError("evaluation: the held-out split is empty")
    per_class = (correct / seen.clamp(min=1)).tolist()
    return EvalResult(
        top1=float(correct.sum() / n),
        top5=float(top5 / n) if k > 5 else None,
        loss=float(loss / n),
        per_class={name: per_class[i] for i, name in enumerate(data.class_names) if seen[i] > 0},
        clips=n,
    )


def _lr_factor(step: int, budget: ProxyBudget) -> float:
    if step < budget.warmup_steps:
        return (step + 1) / budget.warmup_steps
    rest = max(1, budget.steps - budget.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * (step - budget.warmup_steps) / rest))


def _optimizer(model: nn.Module, budget: ProxyBudget) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": budget.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if budget.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=budget.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=budget.lr)


@dataclass(frozen=True)
class _Compute:
    """Where and how a run computes: its device, bf16 autocast, and the channels-last 3D format."""

    device: torch.device
    cuda: bool
    bf16: bool
    channels_last: bool

    @classmethod
    def of(cls, budget: ProxyBudget) -> _Compute:
        device = resolve_device(budget.device)
        cuda = device.type == "cuda"
        bf16 = budget.precision == "bf16" or (budget.precision == "auto" and cuda)
        return cls(device, cuda, bf16, budget.channels_last and cuda)

    def model(self, model: nn.Module | Callable[[], nn.Module]) -> nn.Module:
        """The network on the device, in training mode (built here if ``model`` is a builder)."""
        net = model() if not isinstance(model, nn.Module) else model
        net = net.to(self.device)
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]
        net.train()
        return net

    def evaluate(self, net: nn.Module, data: ClipData, budget: ProxyBudget) -> EvalResult:
        return evaluate(
            net,
            data,
            device=self.device,
            batch_size=budget.eval_batch_size,
            autocast=self.bf16,
            channels_last=self.channels_last,
        )


class _LossLog:
    """The training loss summed on the device since the last point of the loss curve; read
    back to the host only where the run checks it or logs it."""

    def __init__(self, device: torch.device, every: int) -> None:
        self.running = torch.zeros((), device=device)
        self.since = 0
        self.every = every

    def add(self, loss: torch.Tensor) -> None:
        self.running += loss.detach()
        self.since += 1

    def point_due(self, last: bool) -> bool:
        return self.since == self.every or last

    def point(self) -> float:
        """The mean loss since the last point; the sum starts again."""
        mean = float(self.running / self.since)
        self.running.zero_()
        self.since = 0
        return mean


def train_proxy(
    model: nn.Module | Callable[[], nn.Module],
    data: ClipData,
    budget: ProxyBudget | None = None,
    *,
    callback: Callback | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train ``model`` on ``data`` for ``budget`` and evaluate it on the held-out clips.

    Args:
        model: a module, or a function that builds one (called after seeding, so the
            initial weights depend only on ``budget.seed``).
        data: the clip data.
        budget: the proxy budget (default :class:`ProxyBudget()`).
        callback: called after each intermediate evaluation with ``(step, result)``;
            returning True stops the run (status ``stopped``, with that evaluation's accuracy).
        on_step: called with the number of steps done after each optimiser step (progress).
    """
    budget = budget or ProxyBudget()
    t_start = time.perf_counter()
    comp = _Compute.of(budget)
    result = TrainResult(
        status="ok",
        device=str(comp.device),
        precision="bf16" if comp.bf16 else "fp32",
        budget=asdict(budget),
        data=data.describe(),
    )
    old_threads = torch.get_num_threads()
    if budget.threads:
        torch.set_num_threads(budget.threads)
    torch.manual_seed(budget.seed)
    if comp.cuda:
        torch.backends.cudnn.benchmark = True
    try:
        net = comp.model(model)
        _train(net, data, budget, comp, result, callback, on_step)
        if result.status == "ok":
            ev = comp.evaluate(net, data, budget)
            result.eval_curve.append((result.steps_done, ev.top1))
            _record(result, ev)
            if callback is not None:
                callback(result.steps_done, ev)
    except UserError:
        raise
    except Exception as e:  # the run's own failure must not crash the caller
        _record_failure(result, e)
        if comp.cuda:
            torch.cuda.empty_cache()
    finally:
        if budget.threads:
            torch.set_num_threads(old_threads)
    result.wall_time_s = time.perf_counter() - t_start
    return result


def _train(
    net: nn.Module,
    data: ClipData,
    budget: ProxyBudget,
    comp: _Compute,
    result: TrainResult,
    callback: Callback | None,
    on_step: Callable[[int], None] | None,
) -> None:
    """The optimiser steps, with the loss curve and the intermediate evaluations, into
    ``result``; a diverging loss or the callback ends them early (``diverged``, ``stopped``)."""
    opt = _optimizer(net, budget)
    base_lrs = [g["lr"] for g in opt.param_groups]
    batches = data.train_batches(budget.batch_size, seed=budget.seed, device=comp.device)
    log = _LossLog(comp.device, budget.log_every)
    t_train = time.perf_counter()
    train_clips = 0
    for step in range(budget.steps):
        x, y = next(batches)
        log.add(_step(net, opt, base_lrs, x, y, step, budget, comp))
        train_clips += y.numel()
        result.steps_done = step + 1
        if on_step is not None:
            on_step(step + 1)
        last = step + 1 == budget.steps
        eval_due = bool(budget.eval_every) and (step + 1) % budget.eval_every == 0 and not last
        # on CPU a host sync is free: check every step; on a GPU, at each log point and
        # before each evaluation (a NaN model is never evaluated or reported)
        if (not comp.cuda or eval_due or log.point_due(last)) and _diverged(log, step + 1, result):
            break
        if log.point_due(last):
            result.loss_curve.append((step + 1, log.point()))
        if eval_due:
            result.train_time_s += time.perf_counter() - t_train
            ev = comp.evaluate(net, data, budget)
            t_train = time.perf_counter()
            result.eval_curve.append((step + 1, ev.top1))
            if callback is not None and callback(step + 1, ev):
                _record(result, ev)
                result.status, result.reason = "stopped", f"stopped by the caller at step {step + 1}"
                break
    result.train_time_s += time.perf_counter() - t_train
    result.clips_per_s = train_clips / result.train_time_s if result.train_time_s > 0 else 0.0


def _step(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    base_lrs: list[float],
    x: torch.Tensor,
    y: torch.Tensor,
    step: int,
    budget: ProxyBudget,
    comp: _Compute,
) -> torch.Tensor:
    """One optimiser step at the schedule's learning rate; its loss."""
    if comp.channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    f = _lr_factor(step, budget)
    for g, lr in zip(opt.param_groups, base_lrs):
        g["lr"] = lr * f
    with torch.autocast(comp.device.type, dtype=torch.bfloat16, enabled=comp.bf16):
        logits = net(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=budget.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def _diverged(log: _LossLog, steps_done: int, result: TrainResult) -> bool:
    """Whether the summed loss is no longer finite; if so the run is ``diverged``, its last
    loss-curve point the non-finite mean."""
    total = float(log.running)
    if math.isfinite(total):
        return False
    result.loss_curve.append((steps_done, total / log.since))
    result.status, result.reason = "diverged", f"loss became {total} by step {steps_done}"
    return True


def _record_failure(result: TrainResult, e: Exception) -> None:
    """The run's own failure as its status: ``out_of_memory`` or ``failed``, with the reason."""
    if _is_oom(e):
        result.status, result.reason = "out_of_memory", f"out of memory: {str(e).splitlines()[0][:300]}"
    else:
        result.status, result.reason = (
            "failed",
            f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}",
        )


def _record(result: TrainResult, ev: EvalResult) -> None:
    result.accuracy, result.top5, result.eval_loss = ev.top1, ev.top5, ev.loss
    result.per_class_accuracy = ev.per_class
