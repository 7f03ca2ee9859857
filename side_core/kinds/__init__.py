"""The kinds of stage a SIDE run makes, one class each (a :class:`~side_core.run.Stored`): its key,
how it is made, its file names and its typed readers and links, in one place.

    class (folder prefix)                       what it holds                               module
    Generation (generate-)                      plain or guided samples, in shards          generation.py
    Features (features-), Map2D (map-)          per-sample features; their 2-D map         features.py
    Clusters (cluster-)                         the surrogate classes                       clusters.py
    NearIdentical (pool-)                       near-identical pairs among the samples      clusters.py
    Classifier (classifier-)                    the surrogate classifier                    classifier.py
    Evaluation (evaluation-)                    its accuracy at the sampler's timesteps     classifier.py
    Landed (landed-)                            where guided samples fell among the classes classifier.py
    SamplingCost (sampling_cost-)               what a plain and a guided sample cost       cost.py
    Reference (reference-), Score (score-)      the training set; a generation's nearest    scoring.py
                                                training images
    PoolFilter (filter-)                        the Filter baseline on the pool             scoring.py

Folder prefixes and keys stay as stored stages were written, so stored runs (e.g. assets/store) are
reused as they are.
"""
