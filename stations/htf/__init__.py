"""OpenHTF integration: provision an IoT Edge device as phases of a factory's own OpenHTF test.

The only package that imports `openhtf`. `plug` holds the station plug, `phases` the phases.
"""
