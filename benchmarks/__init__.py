"""The benchmark suite: typed-ss against python-socketio, a raw ASGI app, a bare Starlette endpoint and
a Go server (README.md)."""
