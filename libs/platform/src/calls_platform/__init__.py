"""Infrastructure shared by every service: the event store and its outbox relay, PostgreSQL
pools and migrations, RabbitMQ topology, leadership, logging, metrics and HTTP plumbing."""
