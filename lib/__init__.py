"""liftlake's shared library, one sub-package per stage of the data flow.

``storage``     the table store (Delta via delta-rs or delta-spark) and the Spark session
``sim``         the log simulator with ground truth (the embedded default's data source)
``features``    raw-log contract, cleaning / quarantine rules, feature spec, feature tables
``artifacts``   what is published under the warehouse: model store, feature specs, ESCIM labelers
``training``    train set, plan, per-rank loop, comms, launchers (local, Horovod, TorchDistributor)
``scoring``     batch scoring of a model version over a day
``evaluation``  metrics (CVR, uplift, policy), evaluation of a version, report tables, figures
``pipelines``   one module per job, named as the job: the body of ``jobs/<job>.py``
``cli``         the ``liftlake`` command and the command-line contract every job shares
``config``, ``days``, ``log``: settings, day ranges and logging used by all of the above.
"""
