"""The stages of one recommendation request, as small units with typed inputs and outputs.

``Recommender.run`` is the script that calls them in order:

1. ``history``     the history a request runs on (dataset events, stored feedback, raw entries)
2. ``candidates``  model top-N over eligible items, query matches, popular items for new users
3. ``scoring``     per-task model scores, the fused model score, the model (and query) order
4. ``rerank``      the LLM tier chain, the guard over its answer, fusion with the model order
5. ``explain``     evidence, templates and the grounding check; the answer's items
6. ``cache``       the answer cache

``catalog`` holds what every stage needs to know about the items, computed once. The stages
know nothing of workspaces, HTTP or the command line; they can be tested on a tiny in-memory
catalog.
"""
