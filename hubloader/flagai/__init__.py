"""FlagAI's surface on top of hubloader's models: the ``Predictor`` with FlagAI's method names.
FlagAI's config and argument rules live with the load plan (``hubloader.load.flagai_rules``),
its BERT heads with the families (``hubloader.models.bert_flagai``).
"""
