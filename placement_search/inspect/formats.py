"""Exported formats of a built network: TorchScript and ONNX, each checked against eager
PyTorch on the same random clips (:func:`check_against_eager`) before it is kept."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError

__all__ = [
    "INSTALL_EXPORT",
    "TOLERANCE",
    "check_against_eager",
    "digest",
    "first_line",
    "onnx_export",
    "require_onnx",
    "torchscript",
]

#: largest accepted max |exported - eager PyTorch| output difference, relative to max(1, max |PyTorch output|)
TOLERANCE = 1e-4
INSTALL_EXPORT = "pip install 'placement-search[export]'"


def require_onnx() -> None:
    missing = []
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise UserError(f"--format onnx needs {', '.join(missing)}: {INSTALL_EXPORT}")


def digest(data: bytes) -> dict[str, Any]:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def check_against_eager(out: torch.Tensor, ref: torch.Tensor, where: str, what: str) -> float:
    """``max |out - ref|`` of an exported model's output against eager PyTorch's on the same
    clips; a difference over :data:`TOLERANCE` (relative to ``max(1, max |ref|)``) is a
    :class:`UserError` naming ``what`` and ``where``. The one check every format goes through."""
    diff = float((out.float() - ref.float()).abs().max()) if out.shape == ref.shape else float("inf")
    allowed = TOLERANCE * max(1.0, float(ref.abs().max()))
    if not diff <= allowed:
        raise UserError(
            f"{where}: {what} differs from PyTorch's by {diff:.3g} (allowed {allowed:.3g}) on a random clip; not exported"
        )
    return diff


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Silence torch.jit's deprecation warnings and torch.onnx's log lines while exporting."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def torchscript(model: nn.Module, x: torch.Tensor, ref: torch.Tensor, path: Path, where: str) -> dict[str, Any]:
    try:
        with quiet_exporters(), torch.no_grad():
            traced = torch.jit.trace(model, x[:1], check_trace=False)
            traced.save(str(path))
            out = torch.jit.load(str(path))(x)
    except Exception as e:
        raise UserError(f"{where}: TorchScript export failed ({first_line(e)}); export without torchscript") from None
    diff = check_against_eager(out, ref, where, "the TorchScript model's output")
    return {"max_abs_diff": diff, "batch": f"any (traced at 1, checked at {x.shape[0]})"}


def onnx_export(
    model: nn.Module, x: torch.Tensor, ref: torch.Tensor, path: Path, where: str, metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    import onnx
    import onnxruntime

    params = sum(p.numel() * p.element_size() for p in model.parameters())
    kwargs: dict[str, Any] = {
        "dynamo": True,
        "input_names": ["clip"],
        "output_names": ["logits"],
        "external_data": params > 1_500_000_000,  # a single file below ONNX's 2 GB protobuf limit
        "verbose": False,
    }
    dynamic = True
    try:
        with quiet_exporters():
            try:
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(model, (x,), str(path), dynamic_shapes=({0: batch},), **kwargs)
            except Exception:
                dynamic = False
                x, ref = x[:1], ref[:1]
                torch.onnx.export(model, (x,), str(path), **kwargs)
            if metadata:  # what a user needs to feed the model, readable from the file alone
                m = onnx.load(str(path), load_external_data=False)
                for k, v in metadata.items():
                    entry = m.metadata_props.add()
                    entry.key, entry.value = k, v
                onnx.save(m, str(path))
            onnx.checker.check_model(str(path))
            opset = next(
                (
                    o.version
                    for o in onnx.load(str(path), load_external_data=False).opset_import
                    if o.domain in ("", "ai.onnx")
                ),
                None,
            )
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            out = torch.from_numpy(session.run(["logits"], {"clip": x.numpy()})[0])
    except Exception as e:
        raise UserError(f"{where}: ONNX export failed ({first_line(e)}); export without onnx") from None
    diff = check_against_eager(out, ref, where, f"the ONNX model's output (onnxruntime {onnxruntime.__version__})")
    return {
        "max_abs_diff": diff,
        "opset": opset,
        "dynamic_batch": dynamic,
        "input_name": "clip",
        "output_name": "logits",
        "onnxruntime_version": onnxruntime.__version__,
    }
