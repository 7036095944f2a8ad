"""The outputs people read: Slack alerts, the digest email, and the outbox that delivers them once."""
