"""Teachers: one interface (`Teacher`) with vLLM, OpenAI-server, transformers and rule backends."""
