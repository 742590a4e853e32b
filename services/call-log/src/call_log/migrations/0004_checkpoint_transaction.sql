-- The projector's checkpoint becomes the pair (transaction_id, position) of the last event
-- applied: the event store is read in that order since its migration 0002. The position
-- already stored is a position in the store's old, commit-ordered numbering, whose events
-- all have transaction_id 0: (0, position) is the same point.
ALTER TABLE call_log.checkpoints ADD COLUMN transaction_id xid8 NOT NULL DEFAULT '0';
