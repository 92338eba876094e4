"""The benchmark suite: typed-ss against python-socketio and a bare Starlette endpoint (README.md)."""
