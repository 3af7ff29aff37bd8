"""Text models: recurrent and Transformer classifiers, and pretrained Hugging Face encoders.

Every text classifier takes the padded-batch dict built by ``torchlab.data.text``:
``{"ids": (B, T) int64, "mask": (B, T) bool, "lengths": (B,) int64}``.
"""
