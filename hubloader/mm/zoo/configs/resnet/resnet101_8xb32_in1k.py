# hubloader's compact form of mmpretrain's config: the model and what inference reads.

_base_ = ['../_base_/models/resnet101.py', '../_base_/datasets/imagenet_bs32.py']
