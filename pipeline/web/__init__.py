"""The web app of edgeline: audit API, dashboard, /metrics (FastAPI/Starlette imported only here)."""
