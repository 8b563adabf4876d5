"""One line from a ``FunctionHost`` to an agent framework's own tool objects.

One module per framework, each importing its framework only when it is
imported itself (``import host`` imports none of them):

- ``host.adapters.pydantic_ai.tools(fh)``: pydantic-ai ``Tool`` objects;
- ``host.adapters.langchain.tools(fh)``: LangChain ``StructuredTool`` objects;
- ``host.adapters.openai_agents.tools(fh)``: OpenAI Agents SDK ``FunctionTool`` objects;
- ``host.adapters.llamaindex.tools(fh)``: LlamaIndex ``AsyncBaseTool`` objects;
- ``host.adapters.smolagents.tools(fh)``: smolagents ``Tool`` objects.

Every adapter takes fnhost's own schemas (``fh.tools(format=...)``), never
one re-derived from a Python signature, and runs each call through
``fh.dispatch``/``fh.adispatch`` (``host.adapters.hosted_tools``), so a
failure (invalid arguments, an exception, a crash, a timeout) reaches the
model as the same short text ``dispatch`` sends, marked as an error where
the framework has a way to say so, and never ends the agent's run.
"""
