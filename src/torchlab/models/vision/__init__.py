"""Vision models: torchvision backbones with transfer learning, U-Net and segmentation heads,
detectors. One architecture family per file; each registers in :data:`torchlab.registry.MODELS`."""
