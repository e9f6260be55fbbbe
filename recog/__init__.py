"""recog: vehicle recognition over image archives and camera footage, as Ray jobs.

The modules follow the data: storage -> sources -> preprocess -> predict (models, taxonomy)
-> sink, chained in pipeline; jobs/ holds the entry points submitted to a cluster.
"""

__version__ = "0.1.0"
