"""The Cast.ph API simulator (reference/cast.md), used by tests, the demo, benchmarks and
staging. `app.create_cast_app(CastKnobs())` builds it; `knobs.py` lists what can change
live; `simulator.py` holds one instance's state and the send pipeline; `validation.py`,
`parts.py`, `ratelimit.py`, `idempotency.py`, `faults.py` and `messages.py` are its rules;
`controls.py` and `inbound.py` are the `/_sandbox` levers beyond the shared ones.
"""
