"""Incoming webhooks: signature checks (pure) and the receiver that turns requests into asset events."""
