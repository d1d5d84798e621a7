"""Taking a finished local job elsewhere: exports and the Hugging Face Hub.

:mod:`.export` writes a job as a PEFT adapter, a merged model directory or a GGUF file
(with an Ollama Modelfile); :mod:`.gguf_writer` is the GGUF file writer for LLaMA-style
models; :mod:`.hub` pushes a job with a generated model card to a Hub repository. torch,
transformers and gguf are imported only inside the functions that need them.
"""
