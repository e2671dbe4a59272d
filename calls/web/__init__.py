"""The web voice channel (F-74): try an agent from the browser, or talk to it publicly.

Pages and signalling live here (`views.py`, `urls.py`); creating and admitting a web
call in `services.py`, reads in `selectors.py`, the public page's signed token in
`tokens.py`. The media runs in `realtime/web_calls.py` over `realtime/transport/`.
"""
