"""Export formats (TorchScript, ONNX, a torch.export program, a TorchServe archive), their
verification and sidecar, and the runtime that runs an export folder.

Formats register in :data:`torchlab.exporters.base.EXPORTERS`; ``torchlab export`` itself
(what a run exports, in which format) is :func:`torchlab.engine.export.export`.
"""
