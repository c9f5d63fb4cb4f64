"""`GET /api/v1/sms/logs` (and `/api/sms/logs`): the caller's messages with their receipts.

No public Cast document we hold gives this listing's fields, so this is the simulator's
contract, chosen plain and consistent with the status answer (reference/cast.md,
"Delivery status"), whose field names it reuses:

    GET /api/v1/sms/logs?limit=50&offset=0&search=0917
    X-API-Key: <key>

- `limit`: 1 to 500, default 50. `offset`: 0 or more, default 0. `search`: optional,
  case-insensitive, matches part of the message id, text, sender ID or recipient (either
  number form: `0917…` and `+63917…` find the same messages).
- An unknown, repeated or malformed parameter → 400 `VALIDATION_ERROR`.
- 200 → `{"success": true, "total": N, "logs": [row, ...]}`; `total` counts every match
  (before paging); rows are newest first and only the calling key's (another key's
  messages are not visible, as with status look-ups). A row:
  `{message_id, to, message, sender_id, status, dlr_status?, sent_at, delivered_at?,
  error_message?, parts, channel}` — `status`, `dlr_status`, `delivered_at` and
  `error_message` exactly as `GET /api/v1/sms/status/{id}` would answer at that moment;
  `channel` is `sms` or `sim` (SIM sends are listed here too); `to` as it was sent.
- A `cast_test_` key's answer carries `"sandbox": true`, like every answer to it.
"""

from __future__ import annotations

from typing import Any

from castghl.sandbox.cast.messages import MessageLog
from castghl.sandbox.cast.validation import Page


def logs_body(log: MessageLog, api_key: str, page: Page, now: float) -> dict[str, Any]:
    mine = log.of_key(api_key)
    mine.reverse()
    if page.search is not None:
        mine = [message for message in mine if message.matches(page.search)]
    return {"success": True, "total": len(mine),
            "logs": [message.log_row(now)
                     for message in mine[page.offset:page.offset + page.limit]]}
