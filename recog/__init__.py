"""recog: vehicle recognition over image archives and camera footage, as Ray jobs.

The modules follow the data: storage -> sources -> preprocess -> predict (models, taxonomy)
-> sink, chained in pipeline; query and report read the results back; train and evaluate fit
and score models; cluster submits the jobs in jobs/ (their entry points) to a Ray cluster.
"""

__version__ = "0.1.0"
