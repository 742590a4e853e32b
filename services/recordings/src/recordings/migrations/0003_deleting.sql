-- A deletion in two steps, so that no transaction stays open while storage removes the audio
-- (an open writing transaction holds back every event-store reader in the cluster):
-- stored → deleting (committed), the audio removed, then deleting → deleted with its
-- RecordingDeleted. A deletion cut short stays `deleting` (not served) until DELETE is repeated.
ALTER TABLE recordings.recordings DROP CONSTRAINT recordings_state_check;
ALTER TABLE recordings.recordings ADD CONSTRAINT recordings_state_check
    CHECK (state IN ('pending', 'stored', 'absent', 'failed', 'deleting', 'deleted'));
