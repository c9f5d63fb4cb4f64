"""The Cast.ph API simulator (reference/cast.md), used by tests, the demo, benchmarks and
staging. `app.create_cast_app(CastKnobs())` builds it and lists its public API; `knobs.py`
lists what can change live; `simulator.py` holds one instance's state and the send
pipeline; `validation.py`, `parts.py`, `ratelimit.py`, `idempotency.py`, `faults.py` and
`messages.py` are its rules; `accounts.py` (balance, sender IDs and channels, profile,
opt-outs per key), `logs.py` (`/sms/logs`) and `testmode.py` (`sandbox: true`) state the
contracts of the account and listing endpoints; `controls.py` and `inbound.py` are the
`/_sandbox` levers beyond the shared ones.
"""
