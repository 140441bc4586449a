# hubloader's compact form of mmpretrain's config: the model and what inference reads.

data_preprocessor = dict(
    num_classes=10,
    # RGB format normalization parameters
    mean=[125.307, 122.961, 113.8575],
    std=[51.5865, 50.847, 51.255],
    # loaded images are already RGB format
    to_rgb=False)

test_pipeline = [
    dict(type='PackInputs'),
]
