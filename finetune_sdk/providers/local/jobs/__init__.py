"""Job control of the local backend: what a job is on disk and how it is configured.

:mod:`.store` keeps the job registry under ``FINETUNE_HOME/jobs/`` (``job.json``, events,
checkpoints), the uploaded files under ``FINETUNE_HOME/files/``, and the process helpers
that tell a live training process from a vanished one; :mod:`.hparams` maps portable
hyperparameters plus local extras to the trainer's validated settings. Both are light
(pydantic only), so the provider can use them without loading torch.
"""
