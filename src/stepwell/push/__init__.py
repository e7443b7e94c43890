"""Push mode: the engine calls the user's web service, which runs the functions.

`signing` (Standard-Webhooks signatures), `protocol` (the request and response documents),
`endpoint` (the web app's side: replay one run against the steps it was sent), `asgi`/`wsgi`
(the adapters), `guard` (the dispatcher's SSRF guard), `dispatcher` (the server's side).
"""
