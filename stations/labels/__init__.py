"""Unit labels printed at the station when a device passes: ZPL II with a QR code of its registration ID.

`zpl` renders (pure), `qr_preview` draws a PNG preview (segno, the one import of it), `printers` send
bytes to a network label printer or a folder, `spooler` keeps every label on disk until a printer took it.
"""
