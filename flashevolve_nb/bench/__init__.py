"""``flashevolve bench``: our systems side by side with the real ``gepa`` on one server.

See ``/BENCHMARKS.md`` for the method and the latest results; modules:
``figures`` (values), ``gepa_http`` (the real gepa over HTTP), ``ours``
(our modes over HTTP), ``turbo`` (turbo-gepa, optional), ``sampling``
(server-side samples), ``metrics`` (figures and ratios), ``report``
(JSON, Markdown, HTML) and ``runner`` (profiles x systems x seeds x scales).
"""
