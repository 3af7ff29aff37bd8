"""Image data: folders, CSV lists and torchvision datasets of labelled images, transforms,
segmentation masks and detection boxes (COCO JSON, Pascal VOC), and the generated shapes set."""
