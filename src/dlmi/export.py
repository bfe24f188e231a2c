"""Taking a trained model out of Python: TorchScript and ONNX exports, their agreement, latency, a model card.

A deployed model runs in another program (a PACS plug-in, a C++ service, a browser), so it
leaves as a file: TorchScript (read by LibTorch, the C++ PyTorch runtime) or ONNX (read by
ONNX Runtime and many vendors' inference engines). An export is a new implementation of the
model, and it is checked like one: the same inputs must give the same outputs, within
floating-point tolerance, on the whole test set.
"""

from __future__ import annotations

import contextlib
import inspect
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlmi.train import predict_logits, to_float

__all__ = ["agreement", "latency_ms", "load_torchscript", "model_card", "onnx_logits", "onnx_session", "to_onnx", "to_torchscript", "torch_runner"]


@contextlib.contextmanager
def _torchscript_allowed() -> Iterator[None]:
    """Silence torch's deprecation warnings of ``torch.jit`` (torch >= 2.10 steers towards
    ``torch.export``); LibTorch and many serving stacks still load TorchScript files, which is
    why the book still shows the format."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=DeprecationWarning)
        yield


def _example(model: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """One float example image on the model's device (from uint8 or float input)."""
    if example.ndim < 3:
        raise ValueError(f"example must be a batch of images (N, C, H, W), got shape {tuple(example.shape)}")
    x = to_float(example[:1]) if example.dtype == torch.uint8 else example[:1].float()
    device = next(model.parameters()).device
    return x.to(device)


def to_torchscript(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Trace ``model`` (in eval mode) with one example image and save it as TorchScript.

    Tracing records the operations that one input runs through; a model without data-dependent
    control flow (all of the book's classifiers) is captured completely. The file loads without
    the model's Python code, in Python (:func:`load_torchscript`) or in C++ (LibTorch).

    Args:
        model: A trained network mapping float images ``(N, C, H, W)`` in [0, 1] to logits.
        example: Example images (``uint8`` or float); only the first is used.
        path: Where to write the ``.pt`` file.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = _example(model, example)
    with _torchscript_allowed():
        traced = torch.jit.trace(model.eval(), x)
        traced.cpu().save(str(path))
    return path


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Load a TorchScript file onto the CPU, in eval mode (no Python class of the model needed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no TorchScript file at {path}: write it with dlmi.export.to_torchscript first")
    with _torchscript_allowed():
        return torch.jit.load(str(path), map_location="cpu").eval()


def to_onnx(model: nn.Module, example: torch.Tensor, path: str | Path) -> Path:
    """Export ``model`` to ONNX with a variable batch size (input ``"image"``, output ``"logits"``).

    Uses PyTorch's ``torch.export``-based exporter (``dynamo=True``): the model is captured as a
    graph of standard operators, then translated to ONNX operators.

    Args:
        model: A trained network mapping float images ``(N, C, H, W)`` in [0, 1] to logits.
        example: Example images (``uint8`` or float); only the first is used to trace shapes.
        path: Where to write the ``.onnx`` file.

    Returns:
        The path written.
    """
    import onnxscript  # noqa: F401  (the exporter's dependency: fail here, with its name, if missing)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = _example(model, example).cpu()
    model = model.eval().cpu()
    arg = next(iter(inspect.signature(model.forward).parameters))  # the name dynamic_shapes is keyed by
    with warnings.catch_warnings():
        # raised inside torch.export's pytree code (torch 2.13), not by anything we pass
        warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated", category=FutureWarning)
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={arg: {0: torch.export.Dim("batch")}},
            verbose=False,
        )
    return path


def onnx_session(path: str | Path):
    """An ONNX Runtime inference session on the CPU for the model in ``path``."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}: write it with dlmi.export.to_onnx first")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ONNX Runtime's info lines would go to stderr
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_logits(session, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits ``(N, K)`` of an ONNX Runtime session for ``uint8`` images ``(N, C, H, W)``."""
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {images.dtype}; pass the ImageSet's images unchanged")
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: to_float(batch).numpy()})[0] for batch in images.split(batch_size)]
    return torch.from_numpy(np.concatenate(outs))


def agreement(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """How closely two sets of logits ``(N, K)`` agree: largest absolute difference of logits and of
    softmax probabilities, and the share of cases with the same arg-max class."""
    if reference.shape != other.shape:
        raise ValueError(f"logits differ in shape: {tuple(reference.shape)} vs {tuple(other.shape)}")
    a, b = reference.detach().double(), other.detach().double()
    return {
        "max_abs_logit_diff": float((a - b).abs().max()),
        "max_abs_prob_diff": float((a.softmax(1) - b.softmax(1)).abs().max()),
        "same_class": float((a.argmax(1) == b.argmax(1)).double().mean()),
    }


def latency_ms(run: Callable[[], object], repeats: int = 100, warmup: int = 10) -> dict[str, float]:
    """Wall-clock time of ``run()`` in milliseconds: median and 90th percentile over ``repeats`` calls.

    Timing figures depend on the machine and on whatever else it is doing; report them with the
    machine, never as a property of the model alone.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}")
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(1000 * (time.perf_counter() - start))
    return {"median": statistics.median(times), "p90": float(np.percentile(times, 90))}


def torch_runner(model: nn.Module, image: torch.Tensor) -> Callable[[], torch.Tensor]:
    """A no-argument function that runs ``model`` on one ``uint8`` image ``(1, C, H, W)`` (for :func:`latency_ms`)."""

    def run() -> torch.Tensor:
        return predict_logits(model, image, batch_size=1)

    return run


def _section(title: str, body: str | Sequence[str] | Mapping[str, str]) -> str:
    if isinstance(body, Mapping):  # a list, not a table: CommonMark (how notebooks render Markdown) has no tables
        text = "\n".join(f"- {k}: **{v}**" for k, v in body.items())
    elif isinstance(body, str):
        text = body
    else:
        text = "\n".join(f"- {item}" for item in body)
    return f"**{title}**\n\n{text}\n"


def model_card(name: str, sections: Mapping[str, str | Sequence[str] | Mapping[str, str]]) -> str:
    """A model card (Mitchell et al. 2019) as Markdown: a bold title, then one bold-titled section per entry
    (no headings, so the card can sit inside a page without joining its table of contents).

    Args:
        name: The model's name.
        sections: ``{section title: text}``, where text is a paragraph (``str``), a bullet list
            (a sequence of strings) or named values (a mapping, shown as a list of
            ``name: **value**``). Typical sections: model
            details, intended use, out-of-scope uses, data, metrics (with confidence intervals),
            limitations, ethical considerations.

    Returns:
        The card as Markdown.

    Raises:
        ValueError: a section is empty (a card with an empty "limitations" section misleads).
    """
    for title, body in sections.items():
        if not body:
            raise ValueError(f"model card section {title!r} is empty: write it or leave it out")
    return f"**Model card: {name}**\n\n" + "\n".join(_section(t, b) for t, b in sections.items())
