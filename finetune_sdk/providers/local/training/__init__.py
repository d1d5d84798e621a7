"""The local trainer: the job process and the kernels it runs.

:mod:`.train` is the process entry point (``python -m finetune_sdk.providers.local.training.train
JOB_DIR``) that validates, waits for its device, trains and records; :mod:`.trainer` is the
optimisation loop; :mod:`.batching` tokenizes with loss masks and packs without padding;
:mod:`.loss`, :mod:`.attention` and :mod:`.fused` are the chunked loss, per-sequence
attention and fused layers that keep it fast and lean; :mod:`.tiny` writes a tiny random
model for tests and examples. :mod:`.trainer`, :mod:`.loss`, :mod:`.attention` and
:mod:`.fused` import torch when imported; the provider imports none of this package, so
torch is loaded only in the processes that train.
"""
