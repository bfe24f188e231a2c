"""Fail loudly if a core library of the book does not import (run after installing)."""

import importlib
import sys

CORE = ["torch", "torchvision", "monai", "medmnist", "captum", "radiomics", "pydicom", "nibabel", "SimpleITK", "sklearn", "jupyter_book", "weasyprint", "pypdf", "imagehash", "onnxruntime", "onnxscript", "torchmetrics", "dlmi"]


def main() -> int:
    failed = []
    for name in CORE:
        try:
            importlib.import_module(name)
        except Exception as err:  # any import failure is fatal here
            failed.append(f"{name}: {type(err).__name__}: {err}")
    if not failed:
        import torch
        import torchvision
        from torchvision.ops import nms

        # a torch/torchvision pair from different builds dies here with "torchvision::nms does not exist"
        nms(torch.zeros(1, 4), torch.zeros(1), 0.5)
        print(f"environment OK: torch {torch.__version__}, torchvision {torchvision.__version__}, {len(CORE)} libraries import")
        return 0
    print("environment check FAILED; reinstall with `make install`:", *failed, sep="\n  ", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
