"""The dashboard: server-rendered pages (Jinja2, htmx vendored) to see and operate an App in a browser.

`create_dashboard(app)` is an ASGI app: `stepwell server` and `stepwell dev` serve it at `/` beside
the API; mount it into your own ASGI app to serve it elsewhere. See docs/guides/dashboard.md.
"""

from stepwell.dashboard.asgi import create_dashboard

__all__ = ["create_dashboard"]
