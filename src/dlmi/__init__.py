"""dlmi: the helper package of *Deep Learning for Medical Imaging*.

Modules, one concern each: :mod:`dlmi.config` (profile, device, seeds, folders),
:mod:`dlmi.data` (dataset registry and loaders), :mod:`dlmi.models` (networks),
:mod:`dlmi.train` (the book's one training loop), :mod:`dlmi.metrics`,
:mod:`dlmi.plots` and :mod:`dlmi.interpret` (looking inside trained networks),
:mod:`dlmi.radiomics` (hand-crafted features of patches and of regions in MRI),
:mod:`dlmi.ssl` (self-supervised contrastive pretraining, SimCLR).
"""

__version__ = "0.1.0"
