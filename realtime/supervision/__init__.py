"""The supervisor console's server side (F-75): listening, the microphone, control.

Nothing here imports Django.
"""
