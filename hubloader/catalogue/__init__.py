"""The catalogue: which models exist and what they are made of — model cards (``README.md``
with YAML front matter) looked up by name. The hub asks it which source and files a name
means; the load asks it which family.
"""
