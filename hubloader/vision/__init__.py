"""Image preprocessing from ``preprocessor_config.json`` (resize, crop, rescale, normalize).
"""
