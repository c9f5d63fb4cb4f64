"""GoHighLevel: webhook payloads we receive, and the API client we call."""
