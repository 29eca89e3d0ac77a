-- Purging settled operations from the sync queue: purge_sync_queue().
--
-- A queue row is the idempotency record of its operation, so an operation
-- that is purged must still be answered as a duplicate when its device
-- uploads it again, and must not be applied twice.  Each device's
-- operations are purged as a prefix of its numbers (deviceSeq 1, 2, 3, ...
-- without a gap): sync_device.purged_seq is where that prefix ends, and
-- queue_operations answers an upload numbered at most purged_seq that the
-- queue no longer holds with {"duplicate": true, "status": "PURGED"}
-- without queueing it.  A device's prefix ends at a gap (a number the
-- server never received: that upload may still come), and at an operation
-- that is not settled (PENDING, BLOCKED, CONFLICT), settled too recently,
-- or still needed: a later operation of the device that waits depends on
-- it, or waits on the same row (its merge base is built from the device's
-- earlier operations on that row).  Operations within the prefix that have
-- conflict records are kept (the records name them) but do not end it.

ALTER TABLE @extschema@.sync_device ADD COLUMN purged_seq bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN @extschema@.sync_device.purged_seq IS
	'The device''s operations numbered up to here are settled and purged from sync_queue (or kept for their conflict records)';

-- purge_sync_queue(older_than interval) RETURNS jsonb
-- Delete the settled operations (COMPLETED, FAILED, EXPIRED, CANCELLED)
-- that completed more than older_than ago (at least a day), within each
-- device's prefix (see above), of the caller's organizations (row-level
-- security); returns {"purged": n, "kept": n (with conflict records),
-- "devices": n (whose prefix moved)}.  Called by an administrator or on a
-- schedule, e.g. with pg_cron:
--   SELECT cron.schedule('purge-sync-queue', '23 3 * * *',
--                        $$SELECT backup_offline.purge_sync_queue('30 days')$$);
CREATE FUNCTION @extschema@.purge_sync_queue(older_than interval)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged bigint;
	kept bigint;
	devices bigint;
BEGIN
	IF older_than IS NULL OR older_than < interval '1 day' THEN
		PERFORM @extschema@.raise_invalid(format('invalid older_than: %s', coalesce(older_than::text, 'NULL')),
			'Keep at least a day of settled operations (devices retry uploads), such as purge_sync_queue(''30 days'').');
	END IF;
	WITH ops AS (
		SELECT q.id, q.device_id, q.device_seq, d.purged_seq,
			   q.device_seq = d.purged_seq + row_number() OVER (PARTITION BY q.device_id ORDER BY q.device_seq)
			   AND q.status IN ('COMPLETED', 'FAILED', 'EXPIRED', 'CANCELLED') AND q.completed_at < now() - older_than
			   AND NOT EXISTS (SELECT 1 FROM @extschema@.sync_queue w
								WHERE w.device_id = q.device_id AND w.status IN ('PENDING', 'BLOCKED', 'CONFLICT')
								  AND ((w.entity_type = q.entity_type AND w.entity_id = q.entity_id)
									   OR q.operation_id = ANY (w.depends_on))) AS settled,
			   EXISTS (SELECT 1 FROM @extschema@.sync_conflict c WHERE c.queue_id = q.id) AS has_conflict
		  FROM @extschema@.sync_queue q
		  JOIN @extschema@.sync_device d ON d.device_id = q.device_id
		 WHERE q.device_seq > d.purged_seq),
	prefix AS (
		SELECT o.*, bool_and(o.settled) OVER (PARTITION BY o.device_id ORDER BY o.device_seq) AS in_prefix FROM ops o),
	gone AS (
		DELETE FROM @extschema@.sync_queue q USING prefix p
		 WHERE q.id = p.id AND p.in_prefix AND NOT p.has_conflict
		RETURNING q.id),
	moved AS (
		UPDATE @extschema@.sync_device d SET purged_seq = e.last_seq
		  FROM (SELECT p.device_id, max(p.device_seq) AS last_seq FROM prefix p WHERE p.in_prefix GROUP BY 1) e
		 WHERE d.device_id = e.device_id
		RETURNING d.device_id)
	SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM prefix WHERE in_prefix AND has_conflict), (SELECT count(*) FROM moved)
	  INTO purged, kept, devices;
	RETURN jsonb_build_object('purged', purged, 'kept', kept, 'devices', devices);
END
$$;

GRANT DELETE ON @extschema@.sync_queue TO backup_offline_admin;
REVOKE ALL ON FUNCTION @extschema@.purge_sync_queue(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.purge_sync_queue(interval) TO backup_offline_admin;
