"""edgeline's Alembic migrations, installed as a package so that a wheel carries them.

pipeline.db.migrate finds this folder next to the `pipeline` package (in the source tree and in
site-packages alike) and hands it to Alembic as its script location; nothing imports it as Python.
"""
