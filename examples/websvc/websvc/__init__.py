"""websvc: an ASGI web service whose watchdog, metrics and session expiry run
in orbits (or, with ``--tasks=thread``, in threads of the service).

    python -m websvc --port 8000 [--tasks orbit|thread]
    gunicorn -k uvicorn.workers.UvicornWorker -w 2 -c websvc/gunicorn_conf.py websvc.app:app
"""
