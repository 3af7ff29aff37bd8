"""Faster R-CNN detectors (Ren et al., 2015, https://arxiv.org/abs/1506.01497) from torchvision.

The models are torchvision's ``FasterRCNN``: in training mode ``model(images, targets)``
returns a dict of losses, in evaluation mode ``model(images)`` returns one
``{"boxes", "labels", "scores"}`` dict per image. Images are lists of ``(3, H, W)`` tensors
in [0, 1]; the model's own transform resizes them to ``min_size``/``max_size`` and
standardises them with ImageNet statistics.

Pretrained backbones keep their BatchNorm statistics frozen (``FrozenBatchNorm2d``, as
torchvision does): detection batches are too small to estimate them.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from torchlab.data.base import DataSpec
from torchlab.errors import ConfigError
from torchlab.models.vision.segmentation_heads import backbone_state, dilate
from torchlab.registry import MODELS

BackboneWeights = Literal["imagenet", "none", "auto"]


def freeze_first(features: nn.Sequential, trainable_blocks: int) -> None:
    """Freeze all but the last ``trainable_blocks`` blocks of a feature extractor."""
    frozen = len(features) - trainable_blocks
    for block in list(features)[: max(0, frozen)]:
        for param in block.parameters():
            param.requires_grad_(False)


def _check(spec: DataSpec, name: str, num_outputs: int) -> None:
    if len(spec.input_shape) != 3 or spec.input_shape[0] != 3:
        raise ConfigError(
            f"model '{name}' needs RGB images shaped (3, height, width); this data gives "
            f"{spec.input_shape}."
        )
    if num_outputs < 2:
        raise ConfigError(
            f"model '{name}' needs the background plus at least one class; the data has "
            f"{num_outputs} classes."
        )


@MODELS.register("fasterrcnn_mobilenet_v2")
def fasterrcnn_mobilenet_v2(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    weights_backbone: BackboneWeights = "imagenet",
    trainable_blocks: int = 19,
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    min_size: int = 800,
    max_size: int = 1333,
    representation_size: int = 1024,
    rois_per_image: int = 512,
    proposals: int = 1000,
    reduce_channels: int | None = None,
    output_stride: Literal[16, 32] = 32,
) -> nn.Module:
    """Faster R-CNN on MobileNetV2 features, as in torchvision's fine-tuning tutorial.

    The backbone is ``mobilenet_v2.features`` (1280 channels at stride 32), one feature map,
    an ``AnchorGenerator`` of ``anchor_sizes`` x ``aspect_ratios`` and ``RoIAlign`` 7x7.
    With 1280 channels the RPN's 3x3 convolution and the box head's first layer
    (1280 * 7 * 7 inputs) hold most of the compute; ``reduce_channels`` adds a 1x1
    convolution to the backbone that makes both affordable on a CPU.

    Args:
        weights_backbone: ``imagenet`` (installed offline), ``none`` or ``auto``.
        trainable_blocks: Trained blocks of the 19 in ``features``, counted from the top.
        anchor_sizes: Anchor side lengths in pixels of the resized image.
        aspect_ratios: Anchor height/width ratios.
        min_size: The shorter image side the model resizes to (small is fast on CPU).
        max_size: Upper bound of the longer side after resizing.
        representation_size: Width of the two-layer box head.
        rois_per_image: Proposals sampled per image to train the box head.
        proposals: Region proposals kept per image after NMS (fewer is faster; a few
            times the most objects an image holds is plenty).
        reduce_channels: Channels of a 1x1 convolution after the features (none: 1280).
        output_stride: 16 dilates the last stage (atrous convolution, as DeepLab does) for
            a finer feature map on small images, with the same pretrained weights.
    """
    import torchvision
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.misc import FrozenBatchNorm2d

    _check(spec, "fasterrcnn_mobilenet_v2", num_outputs)
    state = backbone_state("mobilenet_v2", weights_backbone)
    norm = FrozenBatchNorm2d if state is not None else nn.BatchNorm2d
    classifier = torchvision.models.mobilenet_v2(norm_layer=norm)
    if state is not None:
        classifier.load_state_dict(state)
        freeze_first(classifier.features, trainable_blocks)
    backbone = classifier.features  # (B, 1280, H / os, W / os)
    if output_stride != 32:
        dilate(backbone, output_stride)
    channels = 1280
    if reduce_channels:
        backbone = nn.Sequential(
            *backbone, nn.Conv2d(1280, reduce_channels, 1), nn.ReLU(inplace=True)
        )
        channels = reduce_channels  # (B, reduce_channels, H / os, W / os)
    backbone.out_channels = channels
    anchors = AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),))
    pooler = MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    return FasterRCNN(
        backbone,
        num_classes=None,  # given by the box predictor
        rpn_anchor_generator=anchors,
        box_roi_pool=pooler,
        box_head=TwoMLPHead(channels * 7 * 7, representation_size),
        box_predictor=torchvision.models.detection.faster_rcnn.FastRCNNPredictor(
            representation_size, num_outputs
        ),
        min_size=min_size,
        max_size=max_size,
        box_batch_size_per_image=rois_per_image,
        rpn_post_nms_top_n_train=proposals,
        rpn_post_nms_top_n_test=proposals,
    )


@MODELS.register("fasterrcnn_mobilenet_v3_large_fpn")
def fasterrcnn_mobilenet_v3_large_fpn(
    spec: DataSpec,
    num_outputs: int,
    /,
    *,
    weights_backbone: BackboneWeights = "auto",
    trainable_layers: int = 3,
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
    min_size: int = 320,
    max_size: int = 640,
    rois_per_image: int = 512,
) -> nn.Module:
    """torchvision's Faster R-CNN with a MobileNetV3-Large FPN backbone, new box predictor.

    Args:
        weights_backbone: ``imagenet``, ``none`` or ``auto`` (imagenet when on this machine
            or downloadable, otherwise from scratch with a warning).
        trainable_layers: Trained backbone stages (0-6) when the backbone is pretrained.
        anchor_sizes: Anchor side lengths on each of the three feature maps.
        min_size: The shorter image side the model resizes to.
        max_size: Upper bound of the longer side after resizing.
        rois_per_image: Proposals sampled per image to train the box head.
    """
    import torchvision
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor
    from torchvision.ops.misc import FrozenBatchNorm2d

    _check(spec, "fasterrcnn_mobilenet_v3_large_fpn", num_outputs)
    state = backbone_state("mobilenet_v3_large", weights_backbone)
    norm = FrozenBatchNorm2d if state is not None else nn.BatchNorm2d
    classifier = torchvision.models.mobilenet_v3_large(norm_layer=norm)
    if state is not None:
        classifier.load_state_dict(state)
    trainable = trainable_layers if state is not None else 6
    backbone = _mobilenet_extractor(classifier, True, trainable)  # FPN over the last 2 stages
    sizes = (tuple(anchor_sizes),) * 3
    return FasterRCNN(
        backbone,
        num_classes=num_outputs,
        rpn_anchor_generator=AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 3),
        min_size=min_size,
        max_size=max_size,
        box_batch_size_per_image=rois_per_image,
    )
