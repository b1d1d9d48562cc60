"""Rerankers for LangChain, LlamaIndex and Haystack, each behind its own optional extra.

- ``rerank_async.integrations.langchain``: ``RerankAsyncCompressor``, a LangChain
  ``BaseDocumentCompressor`` (extra ``langchain``: langchain-core).
- ``rerank_async.integrations.llama_index``: ``RerankAsyncPostprocessor``, a LlamaIndex
  ``BaseNodePostprocessor`` (extra ``llama-index``: llama-index-core).
- ``rerank_async.integrations.haystack``: ``RerankAsyncRanker``, a Haystack 3 component
  (extra ``haystack``: haystack-ai).

Each has a native async path (no thread pool, no event loop of its own, batches sent
concurrently) and takes either ``client=``, a ``RerankClient`` shared with the rest of the
process so that one ``max_concurrency`` bounds them all, or the client's options.
Importing this package imports no framework; each module imports only its own.
"""
