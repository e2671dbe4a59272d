"""Supervisors on a live call (F-75): listening, the microphone, control.

The media side is ``hub.Supervision`` (aiortc loads with a call's first
listener, so this package's ``__init__`` imports nothing); barge, take-over and
hand-back are ``control.SupervisorControl``. Nothing here imports Django.
"""
