"""Outbound campaigns ("一斉コール", F-46 … F-49, F-62 … F-67).

`models` (campaign, contact, attempt, do-not-call), `services` (state changes),
`selectors` (reads), `disclosure` (the opening rule); the dialer: `dialer` (the tick),
`dialing` (one attempt, one Twilio call), `results` (callbacks → attempts, contacts),
`tasks` (the Celery wrappers).
"""
