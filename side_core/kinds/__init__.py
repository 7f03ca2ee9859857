"""The kinds of stage a SIDE run makes, one class each (a :class:`~side_core.run.Stored`): its key,
how it is made, its file names and its typed readers and links, in one place.

    Generation ("generate")         plain or guided samples, in shards          generation.py
    Features, Map2D                 per-sample features; their 2-D map          features.py
    Clusters ("cluster")            the surrogate classes                       clusters.py
    NearIdentical ("pool")          near-identical pairs among the samples      clusters.py
    Landed                          where guided samples fell among the classes clusters.py
    Classifier, Evaluation          the surrogate classifier; its accuracy      classifier.py
    SamplingCost                    what a plain and a guided sample cost       cost.py
    Reference, Score, PoolFilter    the training set; a generation's nearest    scoring.py
                                    training images; the Filter baseline

The string in parentheses (or the lower-case class name) is the stage folder's prefix; it and every
key stay as stored stages were written, so stored runs (e.g. assets/store) are reused as they are.
"""
