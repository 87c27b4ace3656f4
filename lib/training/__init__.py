"""Training: the train set (pinned snapshot materialized as Parquet), the plan a rank receives, the per-rank
loop, the comms (local, DDP, Horovod) and the launchers that run one training function."""
