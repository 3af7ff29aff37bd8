"""torchlab."""
