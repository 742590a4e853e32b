"""Customer webhooks: signed, durable, in-order deliveries of call events."""
