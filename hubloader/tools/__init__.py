"""Tools over loaded models: ``convert`` (a checkpoint into a model directory) and the demo.
"""
