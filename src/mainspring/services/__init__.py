"""Use cases shared by the CLI, the HTTP API and the console; routers and commands stay thin."""
