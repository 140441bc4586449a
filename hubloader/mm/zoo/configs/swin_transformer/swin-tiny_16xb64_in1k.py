# hubloader's compact form of mmpretrain's config: the model and what inference reads.

_base_ = [
    '../_base_/models/swin_transformer/tiny_224.py',
    '../_base_/datasets/imagenet_bs64_swin_224.py',
]
