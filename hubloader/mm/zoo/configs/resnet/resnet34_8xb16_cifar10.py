# hubloader's compact form of mmpretrain's config: the model and what inference reads.

_base_ = ['../_base_/models/resnet34_cifar.py', '../_base_/datasets/cifar10_bs16.py']
