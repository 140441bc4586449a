"""Model packages around the load: zips checked at the door (``packaging``), the downstream
platform's side (``downstream``), and ``hubloader validate`` (``validation``).
"""
