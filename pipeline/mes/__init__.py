"""The factory's MES as edgeline sees it: an approver asked before a unit gets its key.

`ports` is what the service layer depends on; `webhook` (HTTP POST) and `command` (a local program)
are the two ways to ask; `stub` is a small MES stand-in for the demo and the tests.
"""
