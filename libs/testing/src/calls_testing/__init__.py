"""The test kit every member's tests share, one place for each thing:

- `plugin`: the pytest plugin (registered through the `pytest11` entry point): a private
  PostgreSQL database and RabbitMQ vhost per run (`database_factory`, `amqp_factory`, …) and
  the `wait` fixture.
- `waiting.wait_until`: poll a condition until it holds or time runs out.
- `ids`: organization ids, phone numbers, carrier SIDs no other test uses.
- `events.append_as_gateway`: put an event in the event store the way the gateway does.
- `system`: the whole system as real processes (`start_system`/`stop_system`), for the
  end-to-end tests, the chaos suite and the benchmarks.
- `downloads`: the assertions about a downloaded recording WAV.
- `transactions.holding_ids`: how many sessions hold a transaction id (what holds back every
  event-store reader), for tests that work waiting on the network holds none.
"""

from calls_testing.ids import new_call_sid, new_org_id, new_recording_sid, unique_number
from calls_testing.waiting import wait_until

__all__ = ["new_call_sid", "new_org_id", "new_recording_sid", "unique_number", "wait_until"]
