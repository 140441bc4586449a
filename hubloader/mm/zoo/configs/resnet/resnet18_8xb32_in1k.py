# hubloader's compact form of mmpretrain's config: the model and what inference reads.

_base_ = ['../_base_/models/resnet18.py', '../_base_/datasets/imagenet_bs32.py']
